/**
 * A private world for driving PodRuntime through its RPC handlers: temp
 * state/run dirs, a private runsc root, a real CNI bridge network, a real
 * registry holding busybox test images, and an ImageStore that pulled them.
 * Requests and responses go through the real protobuf encoding, so handlers
 * see exactly what grpc-js would hand them.
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import { execa } from 'execa';
import { createLogger, silentLogger } from '../../cri-api/logger.js';
import type { CallContext } from '../../cri-api/server.js';
import type { RuntimeServiceDefinition } from '../../cri-api/generated/runtime/v1/RuntimeService.js';
import { ImageStore } from '../../image-store/index.js';
import { NetworkManager } from '../../network/index.js';
import * as rpc from '../../runtime/index.js';
import { ensureInfraRootfs, openPodRuntime, probeRunscFeatures, Reaper, ReaperLauncher, Runsc, type InfraRootfs, type PodRuntime, type RunscFeatures } from '../../runtime/index.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from './image-builder.js';
import { makeNetTestEnv, type NetTestEnv } from './network-env.js';
import { startRegistry, type TestRegistry } from './registry-server.js';

const proto = protoLoader.loadSync(fileURLToPath(new URL('../../../cri-api/proto/api.proto', import.meta.url)), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const service = proto['runtime.v1.RuntimeService'] as protoLoader.ServiceDefinition;

const HANDLERS = {
  RunPodSandbox: rpc.RunPodSandbox,
  StopPodSandbox: rpc.StopPodSandbox,
  RemovePodSandbox: rpc.RemovePodSandbox,
  PodSandboxStatus: rpc.PodSandboxStatus,
  ListPodSandbox: rpc.ListPodSandbox,
  CreateContainer: rpc.CreateContainer,
  StartContainer: rpc.StartContainer,
  StopContainer: rpc.StopContainer,
  RemoveContainer: rpc.RemoveContainer,
  ContainerStatus: rpc.ContainerStatus,
  ListContainers: rpc.ListContainers,
  UpdateContainerResources: rpc.UpdateContainerResources,
  ReopenContainerLog: rpc.ReopenContainerLog,
  ExecSync: rpc.ExecSync,
};
export type RpcName = keyof typeof HANDLERS;
type Def<K extends RpcName> = RuntimeServiceDefinition[K];
type ReqOf<K extends RpcName> = Def<K> extends protoLoader.MethodDefinition<infer R, infer _S, infer _RO, infer _SO> ? R : never;
type ResOf<K extends RpcName> = Def<K> extends protoLoader.MethodDefinition<infer _R, infer _S, infer _RO, infer SO> ? SO : never;

/** CRI_TEST_LOG=debug shows the runtime's log while a test runs. */
const testLogger = process.env.CRI_TEST_LOG ? createLogger(process.env.CRI_TEST_LOG) : silentLogger;

const ctx: CallContext = { logger: silentLogger, signal: new AbortController().signal };

/** Calls one handler as the gRPC server would: request and response both cross the wire encoding. */
export async function call<K extends RpcName>(rt: PodRuntime, name: K, req: ReqOf<K>): Promise<ResOf<K>> {
  const method = service[name];
  const decoded = method.requestDeserialize(method.requestSerialize(req as object));
  const handler = HANDLERS[name] as (rt: PodRuntime, req: unknown, ctx: CallContext) => Promise<object>;
  const res = await handler(rt, decoded, ctx);
  return method.responseDeserialize(method.responseSerialize(res)) as ResOf<K>;
}

/** Applets the test images carry. */
const APPLETS = [...new Set([...BUSYBOX_APPLETS, 'pwd', 'seq', 'grep', 'wc', 'date', 'stat', 'tail', 'chmod'])];

/** A user and groups the images define, to check name lookups. */
const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1234:2345:app:/home/app:/bin/sh\n';
const GROUP = 'root:x:0:\nnobody:x:65534:\napp:x:2345:\nextra:x:3456:app\n';

export interface CriWorld {
  dir: string;
  stateDir: string;
  runDir: string;
  logDir: string;
  net: NetTestEnv;
  registry: TestRegistry;
  runsc: Runsc;
  network: NetworkManager;
  images: ImageStore;
  infra: InfraRootfs;
  features: RunscFeatures;
  /** busybox, Cmd sleep, image env FROM_IMAGE/OVERRIDE, WorkingDir /work. */
  image: string;
  /** Same files, User "app", StopSignal SIGUSR1. */
  appImage: string;
  rt: PodRuntime;
  /** A new PodRuntime on the same dirs (after closing the old one). */
  reopen(): Promise<PodRuntime>;
  /** Pod network namespaces, runsc containers and mounts still present. */
  leftovers(): Promise<{ netns: string[]; runsc: string[]; mounts: string[] }>;
  cleanup(): Promise<void>;
}

async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat !== '' && !/^\d+ \(.*\) Z /s.test(stat);
}

/** Kills every sandbox under a runsc root and removes its state. */
async function wipeRunscRoot(root: string): Promise<void> {
  const runsc = new Runsc({ binary: '/usr/bin/runsc', root });
  const list = await runsc.list().catch(() => []);
  for (const c of list) if (c.pid > 0) await execa('kill', ['-9', String(c.pid)], { reject: false });
  for (const c of list) await runsc.delete([c.id], { force: true }).catch(() => undefined);
}

async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${dir}/`));
}

async function removeDir(dir: string): Promise<void> {
  await wipeRunscRoot(join(dir, 'run', 'runsc'));
  for (const m of (await mountsUnder(dir)).reverse()) await execa('umount', ['-l', m], { reject: false });
  await rm(dir, { recursive: true, force: true });
}

/** A world of its own: dirs named by the pid, the CNI network from the allocator (test-net.ts). */
export async function makeCriWorld(): Promise<CriWorld> {
  const prefix = 'gvcri-rt-';
  for (const name of await readdir(tmpdir())) {
    const pid = Number(name.startsWith(prefix) ? name.slice(prefix.length).split('-')[0] : NaN);
    if (!Number.isNaN(pid) && !(await alive(pid))) await removeDir(join(tmpdir(), name));
  }
  const dir = await mkdtemp(join(tmpdir(), `${prefix}${process.pid}-`));
  const cleanups: (() => Promise<void>)[] = [() => removeDir(dir)];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    const stateDir = join(dir, 'state');
    const runDir = join(dir, 'run');
    const logDir = join(dir, 'logs');
    await mkdir(logDir, { recursive: true });
    const net = await makeNetTestEnv();
    cleanups.push(() => net.cleanup());
    await net.writeConflist();
    const registry = await startRegistry();
    cleanups.push(() => registry.stop());
    const layers = [{ entries: [...busyboxEntries(APPLETS).filter((e) => !e.path.startsWith('etc/')), { path: 'etc/', type: 'dir' as const }, { path: 'etc/passwd', content: PASSWD }, { path: 'etc/group', content: GROUP }, { path: 'work/', type: 'dir' as const }, { path: 'home/app/', type: 'dir' as const, uid: 1234, gid: 2345 }] }];
    const plain = await pushTestImage(registry.url, 'cri/busybox', { layers, config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin', 'FROM_IMAGE=1', 'OVERRIDE=image'], WorkingDir: '/work' } });
    const app = await pushTestImage(registry.url, 'cri/app', { layers, config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'], User: 'app', StopSignal: 'SIGUSR1' } });

    const images = await ImageStore.open({ stateDir, registries: {}, maxConcurrentDownloads: 2, pullProgressTimeoutMs: 10_000, logger: silentLogger });
    await images.pull(plain.ref);
    await images.pull(app.ref);
    const infra = await ensureInfraRootfs(stateDir);
    const base = { binary: '/usr/bin/runsc', root: join(runDir, 'runsc'), platform: 'systrap' };
    await mkdir(base.root, { recursive: true });
    const features = await probeRunscFeatures({ runsc: new Runsc(base), workDir: join(runDir, 'probe'), infra, logger: silentLogger });
    // As the daemon: the reaper launches create/start and holds tty containers' terminals.
    const reaper = await Reaper.start(testLogger);
    cleanups.push(async () => reaper?.close());
    // As the daemon: short tools (CNI plugins, netns tools, runsc wait/kill/delete...) fork from the reaper.
    const launcher = reaper ? await ReaperLauncher.open(reaper, join(runDir, 'launch')) : undefined;
    const network = await NetworkManager.open(net.options({ runDir, stateDir, launcher }));
    cleanups.push(async () => network.close());
    const runsc = new Runsc({ ...base, overlay2: 'root:memory', ociSeccomp: features.ociSeccomp, reaper, launcher });
    const open = (): Promise<PodRuntime> => openPodRuntime({ stateDir, runDir, runsc, images, network, infra, features: () => features, logger: testLogger });
    const world: CriWorld = {
      dir, stateDir, runDir, logDir, net, registry, runsc, network, images, infra, features,
      image: plain.ref,
      appImage: app.ref,
      rt: await open(),
      async reopen() {
        world.rt = await open();
        return world.rt;
      },
      async leftovers() {
        const netns = await readdir(join(runDir, 'netns')).catch(() => [] as string[]);
        const list = await runsc.list().catch(() => []);
        return { netns, runsc: list.map((c) => c.id), mounts: await mountsUnder(dir) };
      },
      async cleanup() {
        await world.rt.close().catch(() => undefined);
        await cleanup();
      },
    };
    cleanups.push(async () => world.rt.close());
    return world;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** A pod config with everything kubelet always sets. */
export function podConfig(name: string, logDir: string, extra: Record<string, unknown> = {}): ReqOf<'RunPodSandbox'>['config'] {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'test', attempt: 0 },
    hostname: name,
    log_directory: join(logDir, name),
    labels: { app: name },
    annotations: { note: 'x' },
    linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    ...extra,
  };
}

/** A container config; `cmd` becomes command when given. */
export function containerConfig(name: string, image: string, o: { cmd?: string[]; args?: string[]; env?: Record<string, string>; extra?: Record<string, unknown> } = {}): ReqOf<'CreateContainer'>['config'] {
  return {
    metadata: { name, attempt: 0 },
    image: { image },
    command: o.cmd ?? [],
    args: o.args ?? [],
    envs: Object.entries(o.env ?? {}).map(([key, value]) => ({ key, value: Buffer.from(value) })),
    log_path: `${name}.log`,
    labels: { name },
    ...o.extra,
  };
}

/** The content of each CRI log line of `stream`, in order. */
export function logLines(path: string, stream: 'stdout' | 'stderr' = 'stdout'): string[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => /^(\S+) (stdout|stderr) ([PF]) (.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && m[2] === stream)
    .map((m) => m[4]!);
}
