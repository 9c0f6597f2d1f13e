export type { DnsConfig, NetworkOptions, NetworkStatus, PodNetworkRequest, PodNetworkResult, PortMapping } from './types.js';
export { NetworkManager } from './manager.js';
export { writePodFiles } from './pod-files.js';
export { SUPPORTED_CNI_VERSIONS } from './cni-config.js';
export { createNetns, removeNetns } from './netns.js';
