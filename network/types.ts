import type { Launcher } from '../common/index.js';
import type { Logger } from '../cri-api/logger.js';

export interface NetworkOptions {
  /** CNI configuration directory; watched for changes. */
  confDir: string;
  /** CNI plugin directories, searched in order. */
  binDirs: string[];
  /** Volatile state: pod network namespaces live under <runDir>/netns. */
  runDir: string;
  /** Persistent state: the CNI result cache lives under <stateDir>/cni. */
  stateDir: string;
  /** How long one CNI plugin call may take. */
  pluginTimeoutMs: number;
  /** Built-in bridge network, used only when confDir holds no config file at all. */
  defaultNetwork?: { bridge: string; subnet: string };
  /** Runs CNI plugins and the netns tools; execa when absent or not running. */
  launcher?: Launcher;
  logger: Logger;
}

export interface PortMapping {
  protocol: 'tcp' | 'udp' | 'sctp';
  containerPort: number;
  hostPort: number;
  /** Empty for every host address. */
  hostIp: string;
}

export interface DnsConfig {
  servers: string[];
  searches: string[];
  options: string[];
}

export interface PodNetworkRequest {
  podId: string;
  name: string;
  namespace: string;
  uid: string;
  portMappings: PortMapping[];
  /** Bits per second, as kubelet passes them. */
  bandwidth?: { ingressRate?: number; egressRate?: number };
  /** Handed to plugins declaring the "dns" capability. */
  dns?: DnsConfig;
}

export interface PodNetworkResult {
  netnsPath: string;
  /** Primary first; IPv4 before IPv6. */
  ips: string[];
  interfaceName: 'eth0';
}

export interface NetworkStatus {
  ready: boolean;
  reason: string;
  message: string;
}
