/**
 * The bench's shared world: its own directory, names derived from its pid
 * (bridges, CNI networks, subnets), a local registry with the bench images.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pauseElf } from '../runtime/index.js';
// Test helpers are reused as built (dist/test/helpers), as the tests use them.
import { busyboxEntries, pushTestImage, randomLayer, type TarEntry } from '../test/helpers/image-builder.js';
import { startRegistry, type TestRegistry } from '../test/helpers/registry-server.js';

/** Every bench directory is /tmp/gvbench-<pid>: short, because unix socket paths are. */
export const BENCH_DIR_PREFIX = '/tmp/gvbench-';
/** Bridge names: gvbn<pid%10000><contender letter> (at most 15 characters). */
export const BRIDGE_PREFIX = 'gvbn';
/** CNI network names, found again in iptables comments by cleanup. */
export const NETWORK_PREFIX = 'gvisor-cri-bench-';

export interface BenchImages {
  busybox: string;
  /** The ~40 MiB multi-layer image for pulls. */
  big: string;
  bigBytes: number;
  /** An image of SMALL_FILES small files, the shape of a real image's package trees, for pulls. */
  files: string;
  /** containerd's sandbox_image (our 129-byte pause program). */
  pause: string;
  /** busybox plus HTTP_FILE (random bytes) for busybox httpd (stream case only; else ''). */
  http: string;
}

/** What the stream case downloads over port-forward: HTTP_FILE_MIB MiB served by `httpd -h /www`. */
export const HTTP_FILE = 'big.bin';
export const HTTP_FILE_MIB = 20;
export const HTTP_PORT = 8080;

/** The small-files image: 2 layers of 20 directories of 50 files (0.7 to 8 KiB of text each). */
const SMALL_FILE_LAYERS = 2;
const SMALL_FILE_DIRS = 20;
const SMALL_FILES_PER_DIR = 50;
export const SMALL_FILES = SMALL_FILE_LAYERS * SMALL_FILE_DIRS * SMALL_FILES_PER_DIR;

function smallFileLayer(layer: number): { entries: TarEntry[]; gzip: boolean } {
  const entries: TarEntry[] = [];
  for (let d = 0; d < SMALL_FILE_DIRS; d++) {
    entries.push({ path: `usr/share/l${layer}/d${d}/`, type: 'dir' });
    for (let f = 0; f < SMALL_FILES_PER_DIR; f++) entries.push({ path: `usr/share/l${layer}/d${d}/f${f}.txt`, content: randomBytes(512 + ((f * 977) % 6000)).toString('base64') });
  }
  return { entries, gzip: true };
}

export interface BenchEnv {
  pid: number;
  dir: string;
  registry: TestRegistry;
  images: BenchImages;
  /** An unpacked busybox rootfs for the raw contender (the daemons unpack the image themselves). */
  busyboxRootfs: string;
}

export const benchDirOf = (pid: number): string => `${BENCH_DIR_PREFIX}${pid}`;
export const bridgeName = (pid: number, letter: string): string => `${BRIDGE_PREFIX}${pid % 10000}${letter}`;
export const networkName = (pid: number, letter: string): string => `${NETWORK_PREFIX}${pid}-${letter}`;

/** One bench network per contender: bridge, host-local IPAM (state under `ipamDir`), portmap, loopback. */
export function benchConflist(pid: number, letter: string, index: number, ipamDir: string, withLoopback: boolean): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: networkName(pid, letter),
    plugins: [
      {
        type: 'bridge',
        bridge: bridgeName(pid, letter),
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: `10.${150 + index}.${pid % 250}.0/24` }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: ipamDir },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      ...(withLoopback ? [{ type: 'loopback' }] : []),
    ],
  }, null, 2);
}

async function writeTree(root: string, entries: readonly TarEntry[]): Promise<void> {
  for (const e of entries) {
    const p = join(root, e.path);
    if (e.type === 'dir') await mkdir(p, { recursive: true, mode: e.mode });
    else if (e.type === 'symlink') await symlink(e.linkpath ?? '', p);
    else await writeFile(p, e.content ?? '', { mode: e.mode });
  }
  for (const d of ['proc', 'dev', 'sys', 'etc']) await mkdir(join(root, d), { recursive: true });
}

export async function makeBenchEnv(pid: number, bigLayers: number, layerMiB: number, withHttpImage: boolean): Promise<BenchEnv> {
  const dir = benchDirOf(pid);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const registry = await startRegistry();
  try {
    const bb = busyboxEntries();
    const busybox = await pushTestImage(registry.url, 'bench/busybox', { layers: [{ entries: bb }], config: { Cmd: ['sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] } });
    const layers = [{ entries: bb }, ...Array.from({ length: bigLayers }, (_, i) => randomLayer(layerMiB, `blob${i}.bin`, true))];
    const big = await pushTestImage(registry.url, 'bench/big', { layers, config: { Cmd: ['sh'] } });
    const files = await pushTestImage(registry.url, 'bench/files', { layers: Array.from({ length: SMALL_FILE_LAYERS }, (_, i) => smallFileLayer(i)), config: { Cmd: ['sh'] } });
    const pauseEntries: TarEntry[] = [{ path: 'pause', content: pauseElf(), mode: 0o755 }];
    const pause = await pushTestImage(registry.url, 'bench/pause', { tag: '3.9', layers: [{ entries: pauseEntries }], config: { Entrypoint: ['/pause'], User: '65535:65535' } });
    const www: TarEntry[] = [{ path: 'www/', type: 'dir' }, { path: `www/${HTTP_FILE}`, content: randomBytes(HTTP_FILE_MIB * 2 ** 20) }];
    const http = withHttpImage ? (await pushTestImage(registry.url, 'bench/httpd', { layers: [{ entries: bb }, { entries: www }], config: { Cmd: ['sh'] } })).ref : '';
    const busyboxRootfs = join(dir, 'busybox-rootfs');
    await writeTree(busyboxRootfs, bb);
    return { pid, dir, registry, images: { busybox: busybox.ref, big: big.ref, bigBytes: big.size, files: files.ref, pause: pause.ref, http }, busyboxRootfs };
  } catch (err) {
    await registry.stop();
    throw err;
  }
}
