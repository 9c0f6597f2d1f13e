/** Shared fixtures for runtime tests: temp dirs, a busybox rootfs, a driver on a private runsc root. */
import { readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../cri-api/logger.js';
import { ensureInfraRootfs, type InfraRootfs } from '../../runtime/spec/infra-rootfs.js';
import { ANNOTATION_CONTAINER_TYPE, buildContainerSpec, buildSandboxSpec, type ContainerSpecInput, type OciSpec } from '../../runtime/spec/oci-spec.js';
import { Runsc } from '../../runtime/runsc/runsc.js';
import { SandboxDriver } from '../../runtime/runsc/sandbox-driver.js';
import { ALL_LINUX_CAPABILITIES } from '../../runtime/spec/capabilities.js';

const APPLETS = ['sh', 'sleep', 'cat', 'echo', 'true', 'ls', 'touch', 'test', 'printf', 'head', 'seq', 'dd', 'tr'];

/** A read-only-by-convention rootfs: /bin/busybox and applet links. */
export async function makeBusyboxRootfs(dir: string): Promise<string> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'bin', 'busybox'));
  for (const a of APPLETS) await symlink('busybox', join(dir, 'bin', a));
  for (const d of ['proc', 'dev', 'sys', 'etc', 'tmp']) await mkdir(join(dir, d), { recursive: true });
  return dir;
}

export interface RuntimeEnv {
  dir: string;
  runsc: Runsc;
  driver: SandboxDriver;
  infra: InfraRootfs;
  busybox: string;
  cleanup(): Promise<void>;
}

/** A private runsc root under a temp dir; cleanup force-deletes whatever it still lists. */
export async function makeRuntimeEnv(tag: string): Promise<RuntimeEnv> {
  const dir = await mkdtemp(join(tmpdir(), `gvrt-${tag}-`));
  const runsc = new Runsc({ binary: '/usr/bin/runsc', root: join(dir, 'run', 'runsc'), platform: 'systrap', overlay2: 'root:memory', network: 'none' });
  await mkdir(runsc.options.root, { recursive: true });
  const infra = await ensureInfraRootfs(join(dir, 'state'));
  const busybox = await makeBusyboxRootfs(join(dir, 'busybox'));
  const driver = new SandboxDriver(runsc, silentLogger);
  return {
    dir, runsc, driver, infra, busybox,
    async cleanup() {
      for (const c of await runsc.list().catch(() => [])) {
        const st = await runsc.state(c.id).catch(() => undefined);
        if (st?.annotations?.[ANNOTATION_CONTAINER_TYPE] === 'sandbox') await driver.stopSandbox(c.id).catch(() => undefined);
      }
      for (const c of await runsc.list().catch(() => [])) await runsc.delete([c.id], { force: true }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function sandboxSpec(env: RuntimeEnv, id: string, netnsPath?: string): OciSpec {
  return buildSandboxSpec({ id, hostname: id, rootfsDir: env.infra.rootfsDir, args: env.infra.args, netnsPath, daemonOomScoreAdj: 0 });
}

export function containerSpec(env: RuntimeEnv, sandboxId: string, args: string[], extra: Partial<ContainerSpecInput> = {}): OciSpec {
  return buildContainerSpec({
    sandboxId, rootfsDir: env.busybox, readonlyRootfs: false, args, env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 },
    terminal: false, hostname: sandboxId, capabilities: { add: [], drop: [] }, privileged: false,
    knownCapabilities: ALL_LINUX_CAPABILITIES, noNewPrivileges: false, mounts: [], daemonOomScoreAdj: 0, ...extra,
  });
}

/** Number of runsc sandbox processes using `root`, from /proc. */
export function sandboxProcesses(root: string): number {
  let n = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (argv[0] === 'runsc-sandbox' && argv.includes(`--root=${root}`)) n++;
  }
  return n;
}
