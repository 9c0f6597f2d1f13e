/**
 * Linux capability names and how a container's capability set is derived
 * from the CRI request (containerd's rules), limited to what runsc knows.
 */

/** Every capability of Linux up to 6.x, in kernel number order. */
export const ALL_LINUX_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER',
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** containerd's default set for unprivileged containers (oci.WithDefaultSpec). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" all name CAP_NET_ADMIN; "ALL" stays "ALL". */
export function normalizeCapability(name: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === 'ALL') return upper;
  return upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
}

export interface CapabilityRequest {
  add: readonly string[];
  drop: readonly string[];
  privileged: boolean;
  /** Capabilities the runsc in use accepts; anything else makes the container fail to start. */
  known: readonly string[];
}

/**
 * The effective capability list, in containerd's order: privileged gets every
 * known capability; otherwise start from the default set, "ALL" in add makes
 * it every known one, "ALL" in drop then empties it, then individual adds,
 * then individual drops (so AddCapabilities ["ALL"] + DropCapabilities
 * ["CHOWN"] is everything but CAP_CHOWN). Names runsc does not know are left
 * out rather than failing the container.
 */
export function resolveCapabilities(req: CapabilityRequest): string[] {
  if (req.privileged) return [...req.known];
  const add = req.add.map(normalizeCapability);
  const drop = req.drop.map(normalizeCapability);
  let caps = new Set(DEFAULT_CAPABILITIES);
  if (add.includes('ALL')) caps = new Set(req.known);
  if (drop.includes('ALL')) caps = new Set();
  for (const c of add) if (c !== 'ALL') caps.add(c);
  for (const c of drop) caps.delete(c);
  const known = new Set(req.known);
  return ALL_LINUX_CAPABILITIES.filter((c) => caps.has(c) && known.has(c));
}
