// The CRI metrics mapping: stats samples → cAdvisor-named Metric values,
// label values in their descriptor's label_keys order, and how many runsc
// samples a ListPodSandboxMetrics costs.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import * as protoLoader from '@grpc/proto-loader';
import { silentLogger } from '../../cri-api/logger.js';
import type { CallContext } from '../../cri-api/server.js';
import type { Metric } from '../../cri-api/generated/runtime/v1/Metric.js';
import type { ListPodSandboxMetricsResponse__Output } from '../../cri-api/generated/runtime/v1/ListPodSandboxMetricsResponse.js';
import {
  BASE_LABEL_KEYS,
  ListMetricDescriptors,
  ListPodSandboxMetrics,
  RunscError,
  StatsCollector,
  containerMetrics,
  metricDescriptors,
  podNetworkMetrics,
  type ContainerRecord,
  type PodRuntime,
  type Runsc,
  type SandboxRecord,
  type StatsSample,
} from '../../runtime/index.js';

const pod = { id: 'p'.repeat(64), name: 'web', namespace: 'shop', phase: 'ready' } as unknown as SandboxRecord;
const ctr = {
  id: 'c'.repeat(64),
  sandboxId: pod.id,
  name: 'app',
  image: 'registry.example/shop/app:1.2',
  phase: 'running',
  createdAtNs: '1700000000987654321',
} as unknown as ContainerRecord;

const sample: StatsSample = {
  timestampNs: 1_700_000_100_500_000_000n,
  cpuNs: 12_999_999_999n,
  memoryBytes: 41_943_040,
  memoryLimitBytes: 0,
  pids: 3,
  interfaces: [
    { name: 'lo', rxBytes: 10, rxPackets: 1, rxErrors: 0, rxDropped: 0, txBytes: 10, txPackets: 1, txErrors: 0, txDropped: 0 },
    { name: 'eth0', rxBytes: 1500, rxPackets: 12, rxErrors: 1, rxDropped: 2, txBytes: 900, txPackets: 7, txErrors: 3, txDropped: 4 },
  ],
};

const descriptors = new Map(metricDescriptors().map((d) => [d.name!, d]));

/** A metric's labels as a map keyed by its descriptor's label_keys (fails if the lengths differ). */
function labelsOf(m: Metric): Record<string, string> {
  const keys = descriptors.get(m.name!)?.label_keys;
  assert.ok(keys, `${m.name} has a descriptor`);
  assert.equal(m.label_values?.length, keys.length, `${m.name}: one label value per label key`);
  return Object.fromEntries(keys.map((k, i) => [k, m.label_values![i]!]));
}

const find = (ms: Metric[], name: string, labels: Record<string, string> = {}): Metric => {
  const m = ms.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => labelsOf(x)[k] === v));
  assert.ok(m, `${name} ${JSON.stringify(labels)} is there`);
  return m;
};

test('descriptors carry cAdvisor names, help and the base label keys first', () => {
  const names = [...descriptors.keys()];
  for (const want of ['container_cpu_usage_seconds_total', 'container_memory_usage_bytes', 'container_memory_working_set_bytes', 'container_start_time_seconds', 'container_last_seen', 'container_network_receive_bytes_total', 'container_network_transmit_bytes_total']) {
    assert.ok(names.includes(want), `${want} is described`);
  }
  assert.equal(new Set(names).size, names.length, 'names are unique');
  for (const d of descriptors.values()) {
    assert.deepEqual(d.label_keys!.slice(0, BASE_LABEL_KEYS.length), ['id', 'image', 'namespace', 'pod', 'container']);
    assert.ok(d.help && d.help.length > 10, `${d.name} has help`);
  }
  assert.deepEqual(descriptors.get('container_cpu_usage_seconds_total')!.label_keys, [...BASE_LABEL_KEYS, 'cpu']);
  assert.deepEqual(descriptors.get('container_network_receive_bytes_total')!.label_keys, [...BASE_LABEL_KEYS, 'interface']);
  assert.match(descriptors.get('container_memory_working_set_bytes')!.help!, /no per-container memory accounting/);
});

test('a container sample maps to whole-second CPU, memory gauges and times, labelled in key order', () => {
  const ms = containerMetrics(pod, ctr, sample);
  assert.deepEqual(ms.map((m) => m.name), ['container_cpu_usage_seconds_total', 'container_memory_usage_bytes', 'container_memory_working_set_bytes', 'container_start_time_seconds', 'container_last_seen']);
  const cpu = find(ms, 'container_cpu_usage_seconds_total');
  assert.deepEqual(cpu.label_values, [ctr.id, 'registry.example/shop/app:1.2', 'shop', 'web', 'app', 'total']);
  assert.equal(cpu.metric_type, 'COUNTER');
  assert.equal(cpu.value?.value, '12', '12.999999999 s of CPU is 12 whole seconds');
  for (const name of ['container_memory_usage_bytes', 'container_memory_working_set_bytes']) {
    const m = find(ms, name);
    assert.equal(m.metric_type, 'GAUGE');
    assert.equal(m.value?.value, '41943040');
    assert.deepEqual(m.label_values, [ctr.id, 'registry.example/shop/app:1.2', 'shop', 'web', 'app']);
  }
  assert.equal(find(ms, 'container_start_time_seconds').value?.value, '1700000000');
  assert.equal(find(ms, 'container_start_time_seconds').metric_type, 'GAUGE');
  assert.equal(find(ms, 'container_last_seen').value?.value, '1700000100');
  for (const m of ms) {
    assert.equal(m.timestamp, '1700000100500000000', 'the timestamp is the (possibly cached) sample time in ns');
    labelsOf(m);
  }
});

test('pod network series: one per interface but loopback, pod labels with container POD', () => {
  const ms = podNetworkMetrics(pod, sample);
  assert.equal(ms.length, 8, 'eight cAdvisor network counters for eth0 only');
  assert.ok(ms.every((m) => m.metric_type === 'COUNTER'));
  assert.ok(ms.every((m) => labelsOf(m)['interface'] === 'eth0'));
  const rx = find(ms, 'container_network_receive_bytes_total');
  assert.deepEqual(rx.label_values, [pod.id, '', 'shop', 'web', 'POD', 'eth0']);
  assert.equal(rx.value?.value, '1500');
  const want: Record<string, string> = {
    container_network_receive_packets_total: '12',
    container_network_receive_errors_total: '1',
    container_network_receive_packets_dropped_total: '2',
    container_network_transmit_bytes_total: '900',
    container_network_transmit_packets_total: '7',
    container_network_transmit_errors_total: '3',
    container_network_transmit_packets_dropped_total: '4',
  };
  for (const [name, v] of Object.entries(want)) assert.equal(find(ms, name).value?.value, v, name);
});

test('a runsc that reports no packet counts gets no packet series rather than zeros', () => {
  const old: StatsSample = { ...sample, interfaces: [{ name: 'eth0', rxBytes: 5, rxErrors: 0, txBytes: 6, txErrors: 0 }] };
  const names = podNetworkMetrics(pod, old).map((m) => m.name).sort();
  assert.deepEqual(names, ['container_network_receive_bytes_total', 'container_network_receive_errors_total', 'container_network_transmit_bytes_total', 'container_network_transmit_errors_total']);
});

/** A PodRuntime stand-in whose runsc answers `events --stats` from a table and counts the calls. */
function fakeRuntime(pods: SandboxRecord[], containers: ContainerRecord[], cpuNs: Map<string, number>) {
  const calls: string[] = [];
  const runsc = {
    async stats(id: string) {
      calls.push(id);
      const cpu = cpuNs.get(id);
      if (cpu === undefined) throw new RunscError('not-running', 'events', id, 'container is not running');
      return {
        type: 'stats',
        id,
        data: {
          cpu: { usage: { total: cpu } },
          memory: { usage: { usage: 2_000_000 } },
          pids: { current: 1 },
          network_interfaces: [{ Name: 'eth0', RxBytes: 100, RxPackets: 1, RxErrors: 0, RxDropped: 0, TxBytes: 50, TxPackets: 1, TxErrors: 0, TxDropped: 0 }],
        },
      };
    },
  } as unknown as Runsc;
  const source = {
    listSandboxes: () => pods,
    getSandbox: (id: string) => pods.find((p) => p.id === id),
    listContainers: () => containers,
    getContainer: (id: string) => containers.find((c) => c.id === id),
  };
  const stats = new StatsCollector({ runsc, source, writableLayerMountpoint: '/x', logger: silentLogger, cacheMs: 60_000 });
  return { rt: { ...source, stats } as unknown as PodRuntime, calls };
}

const proto = protoLoader.loadSync(fileURLToPath(new URL('../../../cri-api/proto/api.proto', import.meta.url)), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const service = proto['runtime.v1.RuntimeService'] as protoLoader.ServiceDefinition;
const ctx: CallContext = { logger: silentLogger, signal: new AbortController().signal };

async function listOverTheWire(rt: PodRuntime): Promise<ListPodSandboxMetricsResponse__Output> {
  const m = service['ListPodSandboxMetrics']!;
  const res = await ListPodSandboxMetrics(rt, m.requestDeserialize(m.requestSerialize({})) as never, ctx);
  return m.responseDeserialize(m.responseSerialize(res)) as ListPodSandboxMetricsResponse__Output;
}

test('ListPodSandboxMetrics samples running containers once, takes the network from them, and skips what does not run', async () => {
  const empty = { ...pod, id: 'e'.repeat(64), name: 'empty' } as SandboxRecord;
  const stopped = { ...pod, id: 's'.repeat(64), name: 'stopped', phase: 'notready' } as SandboxRecord;
  const exited = { ...ctr, id: 'x'.repeat(64), name: 'done', phase: 'exited' } as ContainerRecord;
  const vanished = { ...ctr, id: 'v'.repeat(64), name: 'vanished' } as ContainerRecord;
  const cpu = new Map([[ctr.id, 3_500_000_000], [empty.id, 100_000_000], [pod.id, 1]]);
  const { rt, calls } = fakeRuntime([pod, empty, stopped], [ctr, exited, vanished], cpu);

  const res = await listOverTheWire(rt);
  assert.deepEqual(calls.sort(), [ctr.id, empty.id, vanished.id].sort(), 'no sample of the pod root when a container runs; none of stopped pods or exited containers');
  assert.deepEqual(res.pod_metrics.map((p) => p.pod_sandbox_id), [pod.id, empty.id]);
  const web = res.pod_metrics[0]!;
  assert.deepEqual(web.container_metrics.map((c) => c.container_id), [ctr.id], 'a container whose sample says it is gone is left out');
  const cpuMetric = web.container_metrics[0]!.metrics.find((m) => m.name === 'container_cpu_usage_seconds_total')!;
  assert.equal(cpuMetric.metric_type, 'COUNTER');
  assert.equal(cpuMetric.value?.value, '3');
  assert.ok(BigInt(cpuMetric.timestamp) > 0n);
  assert.equal(web.metrics.find((m) => m.name === 'container_network_receive_bytes_total')?.value?.value, '100');
  const emptyPod = res.pod_metrics[1]!;
  assert.deepEqual(emptyPod.container_metrics, []);
  assert.equal(emptyPod.metrics.find((m) => m.name === 'container_network_transmit_bytes_total')?.value?.value, '50', 'a pod with no running container still has its network');
  for (const p of res.pod_metrics) {
    for (const m of [...p.metrics, ...p.container_metrics.flatMap((c) => c.metrics)]) labelsOf(m as Metric);
  }

  const before = calls.length;
  await listOverTheWire(rt);
  assert.deepEqual(calls.slice(before), [vanished.id], 'a second scrape within the cache window asks runsc again only about the one whose sample failed');
});

test('ListMetricDescriptors answers the static list', async () => {
  const res = await ListMetricDescriptors({});
  assert.deepEqual(res.descriptors, metricDescriptors());
});
