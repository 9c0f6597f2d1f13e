/** A readiness condition as CRI's Status reports it. */
export interface Condition {
  ready: boolean;
  reason: string;
  message: string;
}

/** What the runtime-level RPCs (Version, Status, RuntimeConfig) report about the daemon. */
export interface RuntimeInfo {
  /** gvisor-cri's own version (package.json). */
  version: string;
  /** Runtime handler names we serve; "" is the default handler. */
  handlers: readonly string[];
  /** runsc present and usable. */
  runtimeCondition(): Promise<Condition>;
  /** CNI config and plugins present. */
  networkCondition(): Condition;
  /** Extra detail for `verbose` Status: runsc path and version, platform, config in effect. */
  verboseInfo(): Promise<Record<string, unknown>>;
  /** Records the pod CIDR kubelet hands over in UpdateRuntimeConfig. */
  setPodCidr(cidr: string): void;
}
