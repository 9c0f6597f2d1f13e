/**
 * The pod infra ("pause") container's rootfs, made by the daemon itself so a
 * pod needs no image pull: one tiny static program that sleeps forever.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/index.js';
import { seccompHelperElf } from '../seccomp/exec-helper.js';
import { staticElf } from './static-elf.js';

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
  /** Host path of the seccomp exec helper (seccomp-helper.ts), on x86-64. */
  seccompHelper?: string;
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
  return staticElf(Buffer.from([0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7]));
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
  let seccompHelper: string | undefined;
  if (native) {
    seccompHelper = join(rootfsDir, 'seccomp-exec');
    const helper = seccompHelperElf();
    if (!(await readFile(seccompHelper).catch(() => undefined))?.equals(helper)) await install(seccompHelper, helper);
  }
  return { rootfsDir, args, busybox: await ensureBusybox(rootfsDir), seccompHelper };
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

/** Atomic, so a crash never leaves a half program; not durable: it is compared and rewritten at every start. */
async function install(target: string, content: Buffer): Promise<void> {
  await writeFileAtomic(target, content, { durability: 'atomic', mode: 0o755 });
}
