/**
 * CRI metrics (ListMetricDescriptors / ListPodSandboxMetrics): the
 * cAdvisor-named series kubelet serves on /metrics/cadvisor when its
 * PodAndContainerStatsFromCRI feature gate is on. kubelet reads the
 * descriptors once, then turns every Metric into a Prometheus sample as is:
 * the value is a float64 of the UInt64Value, the labels are the descriptor's
 * label_keys with the metric's label_values in the same order, and a non-zero
 * timestamp is the sample's time.
 *
 * Conventions follow CRI-O's stats server (and containerd's):
 * - base labels id, image, namespace, pod, container. Container series carry
 *   the container id, its image as the caller named it, and the pod's
 *   namespace and name; pod-level series carry the pod id, an empty image and
 *   container "POD" (as cAdvisor names the pod's network owner).
 * - seconds are whole seconds (UInt64Value has no fraction);
 *   container_cpu_usage_seconds_total has the extra label cpu="total", as
 *   when no per-CPU figures exist.
 * - network series are per pod, one per interface (extra label interface).
 *
 * Only what `runsc events --stats` (runsc 20240729) measures is published;
 * README lists what is left out and why. Numbers come from StatsCollector's
 * samples, which ContainerStats & co share: one kubelet scrape costs at most
 * one runsc call per running container, none when a sample under a second
 * old is at hand.
 */
import type { Metric } from '../../cri-api/generated/runtime/v1/Metric.js';
import type { MetricDescriptor } from '../../cri-api/generated/runtime/v1/MetricDescriptor.js';
import type { PodSandboxMetrics } from '../../cri-api/generated/runtime/v1/PodSandboxMetrics.js';
import { internal } from '../../cri-api/errors.js';
import type { NetworkInterfaceSample, StatsCollector, StatsSample, StatsSource } from './collector.js';
import type { ContainerRecord, SandboxRecord } from '../records/store.js';

/** Label keys every series starts with (CRI-O's and containerd's set, in their order). */
export const BASE_LABEL_KEYS = ['id', 'image', 'namespace', 'pod', 'container'] as const;
/** The `container` label of pod-level series. */
export const POD_CONTAINER_LABEL = 'POD';

type MetricKind = 'COUNTER' | 'GAUGE';

interface Descriptor {
  name: string;
  help: string;
  label_keys: string[];
  kind: MetricKind;
}

const GVISOR_MEMORY =
  'gVisor keeps no per-container memory accounting: this is the sandbox total split equally among the pod\'s running containers, as runsc reports it.';

const d = (name: string, kind: MetricKind, help: string, extraKeys: string[] = []): Descriptor => ({ name, help, kind, label_keys: [...BASE_LABEL_KEYS, ...extraKeys] });

/** Per-container series. */
const CPU_USAGE = d('container_cpu_usage_seconds_total', 'COUNTER', 'Cumulative CPU time consumed in seconds (whole seconds): CPU the gVisor sentry charged to the container\'s tasks.', ['cpu']);
const MEMORY_USAGE = d('container_memory_usage_bytes', 'GAUGE', `Current memory usage in bytes. ${GVISOR_MEMORY}`);
const MEMORY_WORKING_SET = d('container_memory_working_set_bytes', 'GAUGE', `Current working set in bytes: runsc reports no inactive file memory, so this equals container_memory_usage_bytes. ${GVISOR_MEMORY}`);
const START_TIME = d('container_start_time_seconds', 'GAUGE', 'Start time of the container since unix epoch in seconds (its creation, as CRI-O reports it).');
const LAST_SEEN = d('container_last_seen', 'GAUGE', 'Last time a container was seen by the exporter: the unix time, in seconds, of the sample these values come from.');

/** Per-pod network series, one per sandbox netstack interface but loopback (cAdvisor ignores lo too). */
const NETWORK: { desc: Descriptor; value: (n: NetworkInterfaceSample) => number | undefined }[] = [
  { desc: d('container_network_receive_bytes_total', 'COUNTER', 'Cumulative count of bytes received', ['interface']), value: (n) => n.rxBytes },
  { desc: d('container_network_receive_packets_total', 'COUNTER', 'Cumulative count of packets received', ['interface']), value: (n) => n.rxPackets },
  { desc: d('container_network_receive_packets_dropped_total', 'COUNTER', 'Cumulative count of packets dropped while receiving', ['interface']), value: (n) => n.rxDropped },
  { desc: d('container_network_receive_errors_total', 'COUNTER', 'Cumulative count of errors encountered while receiving', ['interface']), value: (n) => n.rxErrors },
  { desc: d('container_network_transmit_bytes_total', 'COUNTER', 'Cumulative count of bytes transmitted', ['interface']), value: (n) => n.txBytes },
  { desc: d('container_network_transmit_packets_total', 'COUNTER', 'Cumulative count of packets transmitted', ['interface']), value: (n) => n.txPackets },
  { desc: d('container_network_transmit_packets_dropped_total', 'COUNTER', 'Cumulative count of packets dropped while transmitting', ['interface']), value: (n) => n.txDropped },
  { desc: d('container_network_transmit_errors_total', 'COUNTER', 'Cumulative count of errors encountered while transmitting', ['interface']), value: (n) => n.txErrors },
];

const DESCRIPTORS: Descriptor[] = [CPU_USAGE, MEMORY_USAGE, MEMORY_WORKING_SET, START_TIME, LAST_SEEN, ...NETWORK.map((n) => n.desc)];

/** The static descriptor list ListMetricDescriptors answers. */
export function metricDescriptors(): MetricDescriptor[] {
  return DESCRIPTORS.map(({ name, help, label_keys }) => ({ name, help, label_keys: [...label_keys] }));
}

const NS_PER_S = 1_000_000_000n;

/** One Metric, its label values in the descriptor's label_keys order. */
function metric(desc: Descriptor, labels: Record<string, string>, value: number | bigint, timestampNs: bigint): Metric {
  const label_values = desc.label_keys.map((k) => {
    const v = labels[k];
    if (v === undefined) throw internal(`metric ${desc.name}: no value for label "${k}"`);
    return v;
  });
  return { name: desc.name, timestamp: String(timestampNs), metric_type: desc.kind, label_values, value: { value: String(value) } };
}

/** Series of one running app container from its sample. */
export function containerMetrics(pod: SandboxRecord, c: ContainerRecord, s: StatsSample): Metric[] {
  const base = { id: c.id, image: c.image, namespace: pod.namespace, pod: pod.name, container: c.name };
  const ts = s.timestampNs;
  return [
    metric(CPU_USAGE, { ...base, cpu: 'total' }, s.cpuNs / NS_PER_S, ts),
    metric(MEMORY_USAGE, base, s.memoryBytes, ts),
    metric(MEMORY_WORKING_SET, base, s.memoryBytes, ts),
    metric(START_TIME, base, BigInt(c.createdAtNs) / NS_PER_S, ts),
    metric(LAST_SEEN, base, ts / NS_PER_S, ts),
  ];
}

/** Pod-level network series from any sample of the pod (every container of a sandbox sees the same netstack). */
export function podNetworkMetrics(pod: SandboxRecord, s: StatsSample): Metric[] {
  const base = { id: pod.id, image: '', namespace: pod.namespace, pod: pod.name, container: POD_CONTAINER_LABEL };
  return s.interfaces
    .filter((n) => n.name !== 'lo')
    .flatMap((n) =>
      NETWORK.flatMap(({ desc, value }) => {
        const v = value(n);
        return v === undefined ? [] : [metric(desc, { ...base, interface: n.name }, v, s.timestampNs)];
      }),
    );
}

/**
 * Metrics of every ready pod and its running app containers. A container or
 * pod that stops while being sampled is left out, as ListPodSandboxStats does.
 */
export async function listPodSandboxMetrics(stats: StatsCollector, source: StatsSource): Promise<PodSandboxMetrics[]> {
  const pods = source.listSandboxes().filter((p) => p.phase === 'ready');
  const containers = source.listContainers();
  const all = await Promise.all(pods.map((p) => podSandboxMetrics(stats, p, containers.filter((c) => c.sandboxId === p.id && c.phase === 'running'))));
  stats.prune();
  return all.filter((m): m is PodSandboxMetrics => m !== undefined);
}

async function podSandboxMetrics(stats: StatsCollector, pod: SandboxRecord, running: ContainerRecord[]): Promise<PodSandboxMetrics | undefined> {
  const samples = await Promise.all(running.map((c) => stats.sample(c.id)));
  const live = running.flatMap((c, i) => (samples[i] ? [{ c, s: samples[i] }] : []));
  // The network comes with any container's sample; only a pod with no
  // running app container costs a sample of its root container.
  const net = live[0]?.s ?? (await stats.sample(pod.id));
  if (!net) return undefined;
  return {
    pod_sandbox_id: pod.id,
    metrics: podNetworkMetrics(pod, net),
    container_metrics: live.map(({ c, s }) => ({ container_id: c.id, metrics: containerMetrics(pod, c, s) })),
  };
}
