/**
 * Pod networking: one network namespace per pod under <runDir>/netns, wired
 * by the node's CNI plugins, plus the pod's resolv.conf/hosts/hostname.
 * The runtime calls setup() before starting the gVisor sandbox in the
 * returned netns (or its halves: prepare() makes the netns, add() runs CNI
 * ADD, so the sandbox may be created in between), and teardown() after
 * stopping it.
 */
export type { DnsConfig, NetworkOptions, NetworkStatus, PodNetworkRequest, PodNetworkResult, PortMapping } from './types.js';
export { NetworkManager } from './manager.js';
export { writePodFiles, writePodHosts } from './pod-files.js';
export { SUPPORTED_CNI_VERSIONS } from './cni-config.js';
export { createNetns, removeNetns } from './netns.js';
