/**
 * The pod infra ("pause") container's rootfs, made by the daemon itself so a
 * pod needs no image pull: one tiny static program that sleeps forever.
 */
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface InfraRootfs {
  /** Read-only rootfs directory shared by every pod's infra container. */
  rootfsDir: string;
  /** The infra process's argv. */
  args: string[];
  /**
   * Path, inside the sandbox, of a static busybox when one was at hand: the
   * in-sandbox tools (port-forward's `nc` relay, the sysctl read-back) run it.
   */
  busybox?: string;
}

/** Where the in-sandbox busybox is taken from: busybox-static's binary. */
const HOST_BUSYBOX = '/bin/busybox';

/** True for an ELF executable without an interpreter (PT_INTERP): one that runs in a rootfs with no libc. */
function isStaticElf(b: Buffer): boolean {
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > b.length) return false;
    if (b.readUInt32LE(at) === 3) return false;
  }
  return true;
}

/** Files the sandbox spec may bind-mount over; they must exist in a read-only rootfs. */
const MOUNT_POINTS = { dirs: ['proc', 'dev', 'sys', 'etc', 'tmp'], files: ['etc/resolv.conf', 'etc/hosts', 'etc/hostname'] };

/**
 * A 129-byte x86-64 ELF executable: `for (;;) pause();` (mov eax, 34;
 * syscall; jmp back). It installs no signal handler, so as pid 1 it ignores
 * SIGTERM; the driver stops it with SIGKILL.
 */
export function pauseElf(): Buffer {
  const code = Buffer.from([0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7]);
  const base = 0x400000n;
  const headers = 64 + 56;
  const size = headers + code.length;
  const b = Buffer.alloc(size);
  // ELF header: 64-bit, little endian, version 1, executable, x86-64.
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0);
  b.writeUInt16LE(2, 16);
  b.writeUInt16LE(0x3e, 18);
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(base + BigInt(headers), 24); // entry: right after the headers
  b.writeBigUInt64LE(64n, 32); // program headers follow the ELF header
  b.writeUInt16LE(64, 52);
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(1, 56);
  // One PT_LOAD segment, read+execute, mapping the whole file at `base`.
  const ph = 64;
  b.writeUInt32LE(1, ph);
  b.writeUInt32LE(5, ph + 4);
  b.writeBigUInt64LE(0n, ph + 8);
  b.writeBigUInt64LE(base, ph + 16);
  b.writeBigUInt64LE(base, ph + 24);
  b.writeBigUInt64LE(BigInt(size), ph + 32);
  b.writeBigUInt64LE(BigInt(size), ph + 40);
  b.writeBigUInt64LE(0x1000n, ph + 48);
  code.copy(b, headers);
  return b;
}

/**
 * Makes (once) and returns the infra rootfs under `stateDir/infra`. On
 * x86-64 the program is written from bytes; elsewhere busybox-static's
 * `/bin/busybox sleep infinity` stands in.
 */
export async function ensureInfraRootfs(stateDir: string, arch: string = process.arch): Promise<InfraRootfs> {
  const rootfsDir = join(stateDir, 'infra', 'rootfs');
  const native = arch === 'x64';
  const program = native ? 'pause' : 'busybox';
  const args = native ? ['/pause'] : ['/busybox', 'sleep', 'infinity'];
  const target = join(rootfsDir, program);
  const wanted = native ? pauseElf() : undefined;
  const current = await readFile(target).catch(() => undefined);
  if (current === undefined || (wanted !== undefined && !current.equals(wanted))) {
    for (const d of MOUNT_POINTS.dirs) await mkdir(join(rootfsDir, d), { recursive: true });
    for (const f of MOUNT_POINTS.files) await writeFile(join(rootfsDir, f), '', { flag: 'a' });
    await install(target, wanted ?? (await readFile(HOST_BUSYBOX)));
  }
  return { rootfsDir, args, busybox: await ensureBusybox(rootfsDir) };
}

/**
 * Port-forward relays through busybox's nc inside the sandbox: runsc's own
 * port-forward of this era crashes the sandbox on segments over 16 KiB.
 */
async function ensureBusybox(rootfsDir: string): Promise<string | undefined> {
  const target = join(rootfsDir, 'busybox');
  const host = await readFile(HOST_BUSYBOX).catch(() => undefined);
  if (!host || !isStaticElf(host)) return undefined;
  const current = await readFile(target).catch(() => undefined);
  if (!current?.equals(host)) await install(target, host);
  return '/busybox';
}

/** Written beside and renamed, so a crash never leaves a half program. */
async function install(target: string, content: Buffer): Promise<void> {
  const tmp = `${target}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  await writeFile(tmp, content);
  await chmod(tmp, 0o755);
  await rename(tmp, target);
}
