// Operations end to end over the real daemon's socket: the container event
// stream (two subscribers at once), the Prometheus endpoint and the audit log.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { startDaemon, testConflist, type TestDaemon, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { freePort } from '../helpers/network-env.js';

const INDEX = 9;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let metricsPort: number;
let auditDir: string;
let auditPath: string;

interface Event {
  container_id: string;
  container_event_type: string;
  created_at: string;
  pod_sandbox_status: { id: string; state: string } | null;
  containers_statuses: { id: string; state: string }[];
}

before(async () => {
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/ops', { layers: [{ entries: busyboxEntries(BUSYBOX_APPLETS) }], config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] } })).ref;
  metricsPort = await freePort();
  auditDir = await mkdtemp(join(tmpdir(), 'gvcri-audit-'));
  // A directory that does not exist yet: the daemon makes it.
  auditPath = join(auditDir, 'sub', 'audit.log');
  d = await startDaemon({ conflist: testConflist(INDEX), args: ['--metrics-port', String(metricsPort), '--audit-log', auditPath] });
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  if (auditDir) await rm(auditDir, { recursive: true, force: true });
});

function podConfig(name: string) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'ops', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name), labels: { app: name } };
}

/** Subscribes to GetContainerEvents and collects what arrives. */
function subscribe(): { events: Event[]; stream: grpc.ClientReadableStream<Event>; ended: Promise<unknown> } {
  const client = d.clients.runtime as unknown as { GetContainerEvents(req: object): grpc.ClientReadableStream<Event> };
  const stream = client.GetContainerEvents({});
  const events: Event[] = [];
  stream.on('data', (ev: Event) => events.push(ev));
  const ended = new Promise((resolve) => {
    stream.on('error', resolve);
    stream.on('end', resolve);
  });
  return { events, stream, ended };
}

async function metricsText(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one sample line, e.g. metric('gvisor_cri_rpc_total', { method: 'Version', code: 'OK' }). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return 0;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(fn: () => T | undefined | false, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test('two subscribers see the pod and container lifecycle in order, with statuses', async () => {
  const a = subscribe();
  const b = subscribe();
  await sleep(300);
  await d.call('image', 'PullImage', { image: { image } });
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('events') })).pod_sandbox_id;
  const config = { metadata: { name: 'app', attempt: 0 }, image: { image }, command: ['sleep', '3600'], log_path: 'app.log' };
  const ctr = (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('events') })).container_id;
  await d.call('runtime', 'StartContainer', { container_id: ctr });
  await d.call('runtime', 'StopContainer', { container_id: ctr, timeout: 0 });
  await d.call('runtime', 'RemoveContainer', { container_id: ctr });
  await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
  const want = [
    [pod, 'CONTAINER_CREATED_EVENT'],
    [pod, 'CONTAINER_STARTED_EVENT'],
    [ctr, 'CONTAINER_CREATED_EVENT'],
    [ctr, 'CONTAINER_STARTED_EVENT'],
    [ctr, 'CONTAINER_STOPPED_EVENT'],
    [ctr, 'CONTAINER_DELETED_EVENT'],
    [pod, 'CONTAINER_STOPPED_EVENT'],
    [pod, 'CONTAINER_DELETED_EVENT'],
  ];
  for (const sub of [a, b]) {
    await eventually(() => sub.events.length >= want.length, 10_000, 'all events');
    assert.deepEqual(sub.events.map((e) => [e.container_id, e.container_event_type]), want);
    const times = sub.events.map((e) => BigInt(e.created_at));
    assert.ok(times.every((t, i) => i === 0 || t >= times[i - 1]!), 'created_at is in ns and does not go back');
    assert.ok(times[0]! > BigInt(Date.now() - 120_000) * 1_000_000n);
    assert.ok(sub.events.every((e) => e.pod_sandbox_status?.id === pod));
    const started = sub.events[3]!;
    assert.equal(started.pod_sandbox_status?.state, 'SANDBOX_READY');
    assert.deepEqual(started.containers_statuses.map((c) => [c.id, c.state]), [[ctr, 'CONTAINER_RUNNING']]);
    assert.deepEqual(sub.events[4]!.containers_statuses.map((c) => c.state), ['CONTAINER_EXITED']);
    assert.deepEqual(sub.events[5]!.containers_statuses, [], 'a deleted container is gone from the statuses');
    assert.equal(sub.events[6]!.pod_sandbox_status?.state, 'SANDBOX_NOTREADY');
  }
  a.stream.cancel();
  b.stream.cancel();
  await Promise.all([a.ended, b.ended]);
});

test('ExecSync calls are audited with their command and outcome; the metrics count them', async () => {
  const before = await metricsText();
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('audit') })).pod_sandbox_id;
  const config = { metadata: { name: 'shell', attempt: 0 }, image: { image }, command: ['sleep', '3600'], log_path: 'shell.log' };
  const ctr = (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('audit') })).container_id;
  await d.call('runtime', 'StartContainer', { container_id: ctr });
  const r = await d.call<{ exit_code: number }>('runtime', 'ExecSync', { container_id: ctr, cmd: ['sh', '-c', 'exit 3'], timeout: 20 });
  assert.equal(r.exit_code, 3);
  await assert.rejects(d.call('runtime', 'ExecSync', { container_id: 'feedfacefeedface', cmd: ['id'], timeout: 5 }), (err: grpc.ServiceError) => err.code === 5);

  const lines = (await readFile(auditPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines.length, 2);
  const [ok, failed] = lines;
  assert.equal(ok!.rpc, 'ExecSync');
  assert.deepEqual(ok!.pod, { id: pod, name: 'audit', namespace: 'ops' });
  assert.deepEqual(ok!.container, { id: ctr, name: 'shell' });
  assert.deepEqual(ok!.cmd, ['sh', '-c', 'exit 3']);
  assert.deepEqual(ok!.outcome, { ok: true, exit_code: 3 });
  assert.ok(Math.abs(Date.parse(ok!.time as string) - Date.now()) < 120_000);
  assert.deepEqual(failed!.container, { id: 'feedfacefeedface', name: '' });
  assert.deepEqual(failed!.cmd, ['id']);
  assert.equal((failed!.outcome as { code: string }).code, 'NOT_FOUND');
  assert.match((failed!.outcome as { message: string }).message, /feedfacefeedface/);

  const text = await metricsText();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    assert.match(line, /^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (NaN|\+Inf|-Inf))$/, `Prometheus text line: ${line}`);
  }
  assert.match(text, /^# TYPE gvisor_cri_rpc_total counter$/m);
  assert.match(text, /^# TYPE gvisor_cri_rpc_duration_seconds histogram$/m);
  const delta = (name: string, labels: Record<string, string>): number => metric(text, name, labels) - metric(before, name, labels);
  assert.equal(delta('gvisor_cri_rpc_total', { method: 'ExecSync', code: 'OK' }), 1);
  assert.equal(delta('gvisor_cri_rpc_total', { method: 'ExecSync', code: 'NOT_FOUND' }), 1);
  assert.equal(delta('gvisor_cri_rpc_total', { method: 'RunPodSandbox', code: 'OK' }), 1);
  assert.equal(delta('gvisor_cri_rpc_duration_seconds_count', { method: 'StartContainer', code: 'OK' }), 1);
  assert.ok(delta('gvisor_cri_runsc_duration_seconds_count', { subcommand: 'create', outcome: 'ok' }) >= 1, 'the sandbox create');
  assert.equal(delta('gvisor_cri_runsc_duration_seconds_count', { subcommand: 'run', outcome: 'ok' }), 1, 'the container run at StartContainer');
  assert.ok(metric(text, 'gvisor_cri_runsc_duration_seconds_count', { subcommand: 'wait' }) === 0, 'runsc wait is not timed');
  assert.equal(metric(text, 'gvisor_cri_pods', { state: 'ready' }), 1);
  assert.equal(metric(text, 'gvisor_cri_containers', { state: 'running' }), 1);
  assert.ok(metric(text, 'gvisor_cri_image_pull_bytes_total') > 1000, 'the pull in the first test counted the image size');
  assert.equal(metric(text, 'gvisor_cri_image_pull_duration_seconds_count', { outcome: 'ok' }), 1);

  // A sleeping container may not have used a measurable nanosecond yet; CPU movement is checked in stats-usage.
  const stats = await d.call<{ stats: { attributes: { id: string }; cpu: { timestamp: string; usage_core_nano_seconds: { value: string } } } }>('runtime', 'ContainerStats', { container_id: ctr });
  assert.equal(stats.stats.attributes.id, ctr, 'ContainerStats is served over the socket');
  assert.ok(BigInt(stats.stats.cpu.timestamp) > 0n);
  assert.ok(Number(stats.stats.cpu.usage_core_nano_seconds.value) >= 0);
  const after = await metricsText();
  assert.ok(metric(after, 'gvisor_cri_runsc_duration_seconds_count', { subcommand: 'events', outcome: 'ok' }) >= 1);
  assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status, 404);
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
});

/** Every message of a server-streaming list RPC. */
function streamAll<T>(rpc: string, req: object, client: object = d.clients.runtime): Promise<T[]> {
  const call = (client as Record<string, (req: object) => grpc.ClientReadableStream<T>>)[rpc]!.call(client, req);
  const messages: T[] = [];
  return new Promise((resolve, reject) => {
    call.on('data', (m: T) => messages.push(m));
    call.on('error', reject);
    call.on('end', () => resolve(messages));
  });
}

test('Stream* list RPCs answer what their List twins answer; UpdatePodSandboxResources is recorded', async () => {
  await d.call('image', 'PullImage', { image: { image } });
  const linux = { resources: { memory_limit_in_bytes: '268435456', cpu_quota: '50000', cpu_period: '100000' }, overhead: { memory_limit_in_bytes: '1048576' } };
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: { ...podConfig('lists'), linux } })).pod_sandbox_id;
  const config = { metadata: { name: 'app', attempt: 0 }, image: { image }, command: ['sleep', '3600'], labels: { tier: 'x' } };
  const ctr = (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('lists') })).container_id;
  await d.call('runtime', 'StartContainer', { container_id: ctr });
  try {
    const flat = <T>(messages: Record<string, T[]>[], key: string): T[] => messages.flatMap((m) => m[key] ?? []);
    const pods = flat(await streamAll<Record<string, object[]>>('StreamPodSandboxes', { filter: { id: pod.slice(0, 10) } }), 'pod_sandboxes');
    assert.deepEqual(pods, (await d.call<{ items: object[] }>('runtime', 'ListPodSandbox', { filter: { id: pod.slice(0, 10) } })).items);
    assert.equal(pods.length, 1);
    const ctrs = flat(await streamAll<Record<string, object[]>>('StreamContainers', { filter: { label_selector: { tier: 'x' } } }), 'containers');
    assert.deepEqual(ctrs.map((c) => (c as { id: string }).id), [ctr]);
    const images = flat(await streamAll<Record<string, object[]>>('StreamImages', {}, d.clients.image), 'images');
    assert.deepEqual(images, (await d.call<{ images: object[] }>('image', 'ListImages', {})).images);
    const cstats = flat(await streamAll<Record<string, { attributes: { id: string } }[]>>('StreamContainerStats', { filter: { id: ctr } }), 'container_stats');
    assert.deepEqual(cstats.map((c) => c.attributes.id), [ctr]);
    const pstats = flat(await streamAll<Record<string, { attributes: { id: string } }[]>>('StreamPodSandboxStats', { filter: { id: pod } }), 'pod_sandbox_stats');
    assert.deepEqual(pstats.map((p) => p.attributes.id), [pod]);
    const metrics = flat(await streamAll<Record<string, { pod_sandbox_id: string }[]>>('StreamPodSandboxMetrics', {}), 'pod_sandbox_metrics');
    assert.ok(metrics.some((m) => m.pod_sandbox_id === pod));
    // An empty answer is one empty message, not silence.
    const none = await streamAll<Record<string, object[]>>('StreamPodSandboxes', { filter: { id: 'no-such-pod' } });
    assert.equal(none.length, 1);
    assert.deepEqual(none[0]!.pod_sandboxes, []);

    const info = async (): Promise<{ podResources: { resources: { memoryLimitBytes: number }; overhead: { memoryLimitBytes: number } } }> =>
      JSON.parse((await d.call<{ info: { info: string } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: pod, verbose: true })).info.info);
    assert.equal((await info()).podResources.resources.memoryLimitBytes, 268435456);
    await d.call('runtime', 'UpdatePodSandboxResources', { pod_sandbox_id: pod, resources: { memory_limit_in_bytes: '536870912' } });
    const after = await info();
    assert.equal(after.podResources.resources.memoryLimitBytes, 536870912);
    assert.equal(after.podResources.overhead.memoryLimitBytes, 1048576, 'an absent overhead keeps the recorded one');
    await assert.rejects(d.call('runtime', 'UpdatePodSandboxResources', { pod_sandbox_id: 'nope' }), { code: 5 });
  } finally {
    await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
    await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
  }
});

test('an open event stream ends when the daemon stops, without holding the stop up', async () => {
  const pods = await d.call<{ items: { id: string }[] }>('runtime', 'ListPodSandbox', {});
  for (const p of pods.items) await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.id });
  const sub = subscribe();
  await sleep(200);
  const t0 = Date.now();
  await d.stop();
  const ms = Date.now() - t0;
  await sub.ended;
  assert.ok(ms < 5000, `daemon stopped in ${ms} ms with a subscriber attached`);
});
