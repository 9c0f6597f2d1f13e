/** What a pod's network request becomes for CNI: its checks, and the runtime config the plugins get. */
import { invalidArgument } from '../cri-api/errors.js';
import type { RuntimeConfig } from './cni-list.js';
import type { PodNetworkRequest } from './types.js';

/** containerd's choice: a rate limit with no burst limit. */
const UNLIMITED_BURST = 2 ** 31 - 1;

/** CNI_CONTAINERID's rule (alphanumeric start, then [A-Za-z0-9_.-]); it also names files here. */
export const POD_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function checkRequest(req: PodNetworkRequest): void {
  if (!POD_ID.test(req.podId)) throw invalidArgument(`pod network: pod id "${req.podId}" must match ${POD_ID.source}`);
  // CNI_ARGS is "K=V;K=V": these characters would corrupt it.
  for (const [k, v] of [['name', req.name], ['namespace', req.namespace], ['uid', req.uid]] as const) {
    if (v === '' || /[;=\s]/.test(v)) throw invalidArgument(`pod network for pod ${req.podId}: ${k} "${v}" must be non-empty without ";", "=" or spaces`);
  }
  for (const p of req.portMappings) {
    const ok = ['tcp', 'udp', 'sctp'].includes(p.protocol) && p.containerPort >= 1 && p.containerPort <= 65535 && p.hostPort >= 0 && p.hostPort <= 65535;
    if (!ok) throw invalidArgument(`pod network for pod ${req.namespace}/${req.name}: bad port mapping ${JSON.stringify(p)}`);
  }
}

export function runtimeConfigFor(req: PodNetworkRequest): RuntimeConfig {
  const rc: RuntimeConfig = {};
  // Like containerd: a mapping without a host port only documents the container port.
  const ports = req.portMappings.filter((p) => p.hostPort > 0);
  if (ports.length > 0) rc.portMappings = ports.map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol, hostIP: p.hostIp }));
  const bw = req.bandwidth;
  if (bw && (bw.ingressRate !== undefined || bw.egressRate !== undefined)) {
    rc.bandwidth = {};
    if (bw.ingressRate !== undefined) Object.assign(rc.bandwidth, { ingressRate: bw.ingressRate, ingressBurst: UNLIMITED_BURST });
    if (bw.egressRate !== undefined) Object.assign(rc.bandwidth, { egressRate: bw.egressRate, egressBurst: UNLIMITED_BURST });
  }
  if (req.dns) rc.dns = { servers: req.dns.servers, searches: req.dns.searches, options: req.dns.options };
  return rc;
}
