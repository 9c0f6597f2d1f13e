import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import * as protoLoader from '@grpc/proto-loader';
import { silentLogger } from '../../cri-api/logger.js';
import type { CallContext } from '../../cri-api/server.js';
import type { ContainerStats__Output } from '../../cri-api/generated/runtime/v1/ContainerStats.js';
import type { PodSandboxStats__Output } from '../../cri-api/generated/runtime/v1/PodSandboxStats.js';
import { ContainerStats, ListContainerStats, ListPodSandboxStats, PodSandboxStats, STATS_CACHE_MS } from '../../runtime/index.js';
import { call, containerConfig, makeCriWorld, podConfig, type CriWorld } from '../helpers/cri-world.js';
import { eventually } from '../helpers/wait.js';

const proto = protoLoader.loadSync(fileURLToPath(new URL('../../../cri-api/proto/api.proto', import.meta.url)), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const service = proto['runtime.v1.RuntimeService'] as protoLoader.ServiceDefinition;
const ctx: CallContext = { logger: silentLogger, signal: new AbortController().signal };

/** Calls a stats handler as the server would: request and response cross the wire encoding. */
async function rpc<Res>(name: string, handler: (rt: CriWorld['rt'], req: never, ctx: CallContext) => Promise<object>, req: object): Promise<Res> {
  const m = service[name]!;
  const res = await handler(w.rt, m.requestDeserialize(m.requestSerialize(req)) as never, ctx);
  return m.responseDeserialize(m.responseSerialize(res)) as Res;
}

const containerStats = async (id: string): Promise<ContainerStats__Output> => (await rpc<{ stats: ContainerStats__Output }>('ContainerStats', ContainerStats, { container_id: id })).stats;
const podStats = async (id: string): Promise<PodSandboxStats__Output> => (await rpc<{ stats: PodSandboxStats__Output }>('PodSandboxStats', PodSandboxStats, { pod_sandbox_id: id })).stats;
const n = (v: { value: string } | null | undefined): number => Number(v?.value ?? NaN);
const tsOf = (s: ContainerStats__Output | PodSandboxStats__Output): bigint => BigInt(('cpu' in s ? s.cpu?.timestamp : s.linux?.cpu?.timestamp) ?? '0');
/** Polls `get` until it answers a sample taken at least `gapMs` after `prev`'s (a new one once the cache window passed). */
const sampleAfter = <S extends ContainerStats__Output | PodSandboxStats__Output>(get: () => Promise<S>, prev: S, gapMs: number): Promise<S> =>
  eventually(async () => {
    const s = await get();
    return tsOf(s) - tsOf(prev) >= BigInt(gapMs) * 1_000_000n ? s : undefined;
  }, STATS_CACHE_MS * 10, `a stats sample ${gapMs} ms after the last`);

let w: CriWorld;
let pod: string;
let burner: string;
let idle: string;

before(async () => {
  w = await makeCriWorld();
  const config = podConfig('stats', w.logDir);
  pod = (await call(w.rt, 'RunPodSandbox', { config, runtime_handler: '' })).pod_sandbox_id;
  const start = async (name: string, cmd: string[]): Promise<string> => {
    const id = (await call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig(name, w.image, { cmd }), sandbox_config: config })).container_id;
    await call(w.rt, 'StartContainer', { container_id: id });
    return id;
  };
  burner = await start('burner', ['sh', '-c', 'while :; do :; done']);
  idle = await start('idle', ['sleep', '3600']);
});

after(async () => {
  await w?.cleanup();
});

test('a CPU-burning container shows cumulative CPU time and about one core of rate', async () => {
  const first = await containerStats(burner);
  assert.equal(first.attributes?.id, burner);
  assert.equal(first.attributes?.metadata?.name, 'burner');
  const second = await sampleAfter(() => containerStats(burner), first, STATS_CACHE_MS + 500);
  const cpu1 = n(first.cpu?.usage_core_nano_seconds);
  const cpu2 = n(second.cpu?.usage_core_nano_seconds);
  const dt = Number(BigInt(second.cpu!.timestamp) - BigInt(first.cpu!.timestamp));
  assert.ok(dt > 1e9, `timestamps are ns apart by the wait: ${dt}`);
  assert.ok(cpu2 - cpu1 > 0.3 * dt, `burner used ${cpu2 - cpu1} ns of CPU in ${dt} ns`);
  const rate = n(second.cpu?.usage_nano_cores);
  assert.ok(rate > 0.3e9 && rate < 2.5e9, `usage_nano_cores ${rate} is about one core`);
  const idleStats = await containerStats(idle);
  const idle2 = await sampleAfter(() => containerStats(idle), idleStats, STATS_CACHE_MS);
  assert.ok(n(idle2.cpu?.usage_nano_cores) < 0.1e9, `an idle container's rate stays low: ${JSON.stringify([idleStats.cpu, idle2.cpu])}`);
  assert.ok(n(idleStats.cpu?.usage_core_nano_seconds) < cpu1);
});

test('repeated polls within the cache window are answered by one sample', async () => {
  const a = await containerStats(idle);
  const b = await containerStats(idle);
  assert.equal(a.cpu?.timestamp, b.cpu?.timestamp);
  // Past the window a new sample is taken.
  const c = await sampleAfter(() => containerStats(idle), a, 1);
  assert.notEqual(c.cpu?.timestamp, a.cpu?.timestamp);
});

test('memory grows when a container fills its in-memory rootfs, and pod memory is the sandbox total', async () => {
  const before = await podStats(pod);
  const memBefore = n(before.linux?.memory?.working_set_bytes);
  assert.ok(memBefore > 0, 'the sandbox uses some memory');
  const r = await call(w.rt, 'ExecSync', { container_id: idle, cmd: ['sh', '-c', 'busybox head -c 60000000 /dev/zero > /tmp/big && echo done'], timeout: '30' });
  assert.equal(Buffer.from(r.stdout).toString().trim(), 'done', Buffer.from(r.stderr).toString());
  // The sentry accounts memory lazily: a sample taken right after the write may not show it yet.
  const after = await eventually(async () => {
    const s = await podStats(pod);
    const grown = n(s.linux?.memory?.working_set_bytes) - memBefore;
    if (tsOf(s) > tsOf(before) && grown > 40e6) return s;
    throw new Error(`pod memory grew by ${grown} bytes after writing 60 MB`);
  }, STATS_CACHE_MS * 20, 'pod memory to grow by 40 MB');
  const memAfter = n(after.linux?.memory?.working_set_bytes);
  assert.equal(n(after.linux?.memory?.usage_bytes), memAfter);
  // runsc splits the sandbox total equally between the two app containers.
  const c = await containerStats(idle);
  const share = n(c.memory?.working_set_bytes);
  assert.ok(Math.abs(share * 2 - memAfter) < 1e6, `container share ${share} is half the pod's ${memAfter}`);
  assert.equal(c.memory?.rss_bytes, null, 'runsc reports no RSS: left unset');
  assert.equal(c.writable_layer?.used_bytes?.value, '0');
  assert.ok(c.writable_layer?.fs_id?.mountpoint);
});

test('pod stats carry its running containers, processes and the sandbox network', async () => {
  const s = await podStats(pod);
  assert.equal(s.attributes?.id, pod);
  assert.equal(s.attributes?.metadata?.name, 'stats');
  assert.deepEqual(s.linux?.containers.map((c) => c.attributes?.metadata?.name).sort(), ['burner', 'idle']);
  const sum = s.linux!.containers.reduce((t, c) => t + n(c.cpu?.usage_core_nano_seconds), 0);
  assert.ok(n(s.linux?.cpu?.usage_core_nano_seconds) >= sum);
  const podRate = n(s.linux?.cpu?.usage_nano_cores);
  assert.ok(podRate > 0.3e9 && podRate < 2.5e9, `the pod burns about one core: ${podRate}`);
  assert.equal(n((await podStats(pod)).linux?.cpu?.usage_nano_cores), podRate, 'a poll within the cache window keeps the rate');
  assert.ok(n(s.linux?.process?.process_count) >= 3, `infra, burner shell and sleep: ${n(s.linux?.process?.process_count)}`);
  assert.equal(s.linux?.network?.default_interface?.name, 'eth0');
  assert.ok(s.linux?.network?.interfaces.some((i) => i.name === 'lo'));
  assert.ok(n(s.linux?.network?.default_interface?.rx_bytes) >= 0);
});

test('lists honour the filters and skip what does not run', async () => {
  const all = await rpc<{ stats: ContainerStats__Output[] }>('ListContainerStats', ListContainerStats, {});
  assert.deepEqual(all.stats.map((s) => s.attributes?.id).sort(), [burner, idle].sort());
  const byId = await rpc<{ stats: ContainerStats__Output[] }>('ListContainerStats', ListContainerStats, { filter: { id: burner.slice(0, 12) } });
  assert.deepEqual(byId.stats.map((s) => s.attributes?.id), [burner]);
  const byLabel = await rpc<{ stats: ContainerStats__Output[] }>('ListContainerStats', ListContainerStats, { filter: { pod_sandbox_id: pod, label_selector: { name: 'idle' } } });
  assert.deepEqual(byLabel.stats.map((s) => s.attributes?.id), [idle]);
  const none = await rpc<{ stats: ContainerStats__Output[] }>('ListContainerStats', ListContainerStats, { filter: { pod_sandbox_id: 'ffff' } });
  assert.deepEqual(none.stats, []);
  const pods = await rpc<{ stats: PodSandboxStats__Output[] }>('ListPodSandboxStats', ListPodSandboxStats, { filter: { label_selector: { app: 'stats' } } });
  assert.deepEqual(pods.stats.map((s) => s.attributes?.id), [pod]);

  await call(w.rt, 'StopContainer', { container_id: burner, timeout: '0' });
  await eventually(async () => w.rt.getContainer(burner)?.phase === 'exited', 15_000, 'burner to exit');
  const after = await rpc<{ stats: ContainerStats__Output[] }>('ListContainerStats', ListContainerStats, {});
  assert.deepEqual(after.stats.map((s) => s.attributes?.id), [idle]);
  await assert.rejects(containerStats(burner), (err: { code?: number; message: string }) => err.code === 5 && /exited/.test(err.message));
  await assert.rejects(containerStats('0123456789ab'), (err: { code?: number }) => err.code === 5);
  await assert.rejects(podStats('0123456789ab'), (err: { code?: number }) => err.code === 5);
  const podAfter = await podStats(pod);
  const idleAfter = podAfter.linux!.containers.find((c) => c.attributes?.id === idle)!;
  assert.equal(n(podAfter.linux?.memory?.usage_bytes), n(idleAfter.memory?.usage_bytes), 'an exited container no longer takes a share of the sandbox memory');
});

test('a stopped pod has no stats', async () => {
  await call(w.rt, 'StopPodSandbox', { pod_sandbox_id: pod });
  await assert.rejects(podStats(pod), (err: { code?: number; message: string }) => err.code === 5 && /not ready/.test(err.message));
  const pods = await rpc<{ stats: PodSandboxStats__Output[] }>('ListPodSandboxStats', ListPodSandboxStats, {});
  assert.deepEqual(pods.stats, []);
  const ctrs = await rpc<{ stats: ContainerStats__Output[] }>('ListContainerStats', ListContainerStats, {});
  assert.deepEqual(ctrs.stats, []);
});
