// ListMetricDescriptors / ListPodSandboxMetrics end to end over the real
// daemon's socket, read the way kubelet's CRI metrics collector reads them
// (PodAndContainerStatsFromCRI): every metric must name a descriptor and carry
// one label value per label key, or kubelet drops it.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startDaemon, testConflist, type TestDaemon, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';

const INDEX = 21;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;

interface Descriptor {
  name: string;
  help: string;
  label_keys: string[];
}
interface Metric {
  name: string;
  timestamp: string;
  metric_type: 'COUNTER' | 'GAUGE';
  label_values: string[];
  value: { value: string } | null;
}
interface PodMetrics {
  pod_sandbox_id: string;
  metrics: Metric[];
  container_metrics: { container_id: string; metrics: Metric[] }[];
}

before(async () => {
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/metrics', { layers: [{ entries: busyboxEntries(BUSYBOX_APPLETS) }], config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] } })).ref;
  d = await startDaemon({ conflist: testConflist(INDEX) });
  await d.call('image', 'PullImage', { image: { image } });
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
});

function podConfig(name: string) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'metrics-ns', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name), labels: { app: name } };
}

async function runContainer(pod: string, podName: string, name: string, command: string[]): Promise<string> {
  const config = { metadata: { name, attempt: 0 }, image: { image }, command, log_path: `${name}.log` };
  const id = (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig(podName) })).container_id;
  await d.call('runtime', 'StartContainer', { container_id: id });
  return id;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function descriptors(): Promise<Map<string, Descriptor>> {
  const res = await d.call<{ descriptors: Descriptor[] }>('runtime', 'ListMetricDescriptors', {});
  return new Map(res.descriptors.map((x) => [x.name, x]));
}

async function podMetrics(): Promise<PodMetrics[]> {
  return (await d.call<{ pod_metrics: PodMetrics[] }>('runtime', 'ListPodSandboxMetrics', {})).pod_metrics;
}

/** The metric's labels keyed by its descriptor's label_keys, checked the way kubelet's collector checks them. */
function labels(descs: Map<string, Descriptor>, m: Metric): Record<string, string> {
  const desc = descs.get(m.name);
  assert.ok(desc, `${m.name} has a descriptor`);
  assert.equal(m.label_values.length, desc.label_keys.length, `${m.name}: label_values ${JSON.stringify(m.label_values)} line up with ${JSON.stringify(desc.label_keys)}`);
  assert.ok(m.metric_type === 'COUNTER' || m.metric_type === 'GAUGE');
  assert.match(m.value?.value ?? '', /^\d+$/, `${m.name} has a value`);
  return Object.fromEntries(desc.label_keys.map((k, i) => [k, m.label_values[i]!]));
}

function value(ms: Metric[], name: string): number {
  const m = ms.find((x) => x.name === name);
  assert.ok(m, `${name} is reported: ${ms.map((x) => x.name).join(', ')}`);
  return Number(m.value?.value);
}

test('descriptors name the cAdvisor series kubelet serves on /metrics/cadvisor', async () => {
  const descs = await descriptors();
  for (const name of ['container_cpu_usage_seconds_total', 'container_memory_usage_bytes', 'container_memory_working_set_bytes', 'container_start_time_seconds', 'container_last_seen', 'container_network_receive_bytes_total', 'container_network_transmit_bytes_total']) {
    assert.ok(descs.has(name), `${name} is described`);
  }
  for (const desc of descs.values()) assert.deepEqual(desc.label_keys.slice(0, 5), ['id', 'image', 'namespace', 'pod', 'container']);
});

test('a pod with a CPU burner: its CPU counter grows, memory is reported, labels match the descriptors', async () => {
  const descs = await descriptors();
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('burn') })).pod_sandbox_id;
  const burner = await runContainer(pod, 'burn', 'burner', ['sh', '-c', 'while :; do :; done']);
  const idle = await runContainer(pod, 'burn', 'idle', ['sleep', '3600']);
  await sleep(1500);

  const first = (await podMetrics()).find((p) => p.pod_sandbox_id === pod);
  assert.ok(first, 'the pod is listed');
  assert.deepEqual(first.container_metrics.map((c) => c.container_id).sort(), [burner, idle].sort());
  const burner1 = first.container_metrics.find((c) => c.container_id === burner)!.metrics;
  const cpu1 = value(burner1, 'container_cpu_usage_seconds_total');
  await sleep(3000);
  const second = (await podMetrics()).find((p) => p.pod_sandbox_id === pod)!;
  const burner2 = second.container_metrics.find((c) => c.container_id === burner)!.metrics;
  const cpu2 = value(burner2, 'container_cpu_usage_seconds_total');
  assert.ok(cpu2 - cpu1 >= 1, `the burner's CPU seconds grew over 3 s of burning: ${cpu1} → ${cpu2}`);
  const ts1 = BigInt(burner1[0]!.timestamp);
  const ts2 = BigInt(burner2[0]!.timestamp);
  assert.ok(ts2 - ts1 >= 2_500_000_000n, `the timestamps are the samples' times in ns: ${ts1} → ${ts2}`);

  for (const c of second.container_metrics) {
    const name = c.container_id === burner ? 'burner' : 'idle';
    assert.ok(value(c.metrics, 'container_memory_usage_bytes') > 0, `${name} has a memory share`);
    assert.ok(value(c.metrics, 'container_memory_working_set_bytes') > 0);
    const start = value(c.metrics, 'container_start_time_seconds');
    assert.ok(Math.abs(start - Date.now() / 1000) < 120, `${name} started just now: ${start}`);
    assert.ok(value(c.metrics, 'container_last_seen') >= start);
    for (const m of c.metrics) {
      const l = labels(descs, m);
      assert.deepEqual([l['id'], l['image'], l['namespace'], l['pod'], l['container']], [c.container_id, image, 'metrics-ns', 'burn', name], m.name);
      if (m.name === 'container_cpu_usage_seconds_total') {
        assert.equal(l['cpu'], 'total');
        assert.equal(m.metric_type, 'COUNTER');
      }
      if (m.name.startsWith('container_memory_')) assert.equal(m.metric_type, 'GAUGE');
    }
  }
  assert.ok(value(burner2, 'container_cpu_usage_seconds_total') > value(second.container_metrics.find((c) => c.container_id === idle)!.metrics, 'container_cpu_usage_seconds_total'), 'the burner used more CPU than the sleeper');

  const ifaces = new Set<string>();
  for (const m of second.metrics) {
    const l = labels(descs, m);
    assert.deepEqual([l['id'], l['image'], l['namespace'], l['pod'], l['container']], [pod, '', 'metrics-ns', 'burn', 'POD'], m.name);
    assert.equal(m.metric_type, 'COUNTER');
    ifaces.add(l['interface']!);
  }
  assert.deepEqual([...ifaces], ['eth0'], 'pod network series cover the CNI interface, not loopback');
  assert.ok(second.metrics.some((m) => m.name === 'container_network_receive_bytes_total'));
  assert.ok(second.metrics.some((m) => m.name === 'container_network_transmit_bytes_total'));

  // A stopped container leaves the list; a stopped pod leaves it altogether.
  await d.call('runtime', 'StopContainer', { container_id: burner, timeout: 0 });
  const afterStop = (await podMetrics()).find((p) => p.pod_sandbox_id === pod)!;
  assert.deepEqual(afterStop.container_metrics.map((c) => c.container_id), [idle]);
  await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
  assert.equal((await podMetrics()).find((p) => p.pod_sandbox_id === pod), undefined);
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
});

test('a pod without containers still reports its network', async () => {
  const descs = await descriptors();
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('bare') })).pod_sandbox_id;
  const p = (await podMetrics()).find((x) => x.pod_sandbox_id === pod);
  assert.ok(p, 'the pod is listed');
  assert.deepEqual(p.container_metrics, []);
  assert.ok(value(p.metrics, 'container_network_receive_bytes_total') >= 0);
  for (const m of p.metrics) assert.equal(labels(descs, m)['pod'], 'bare');
  await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
});
