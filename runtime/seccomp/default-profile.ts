/**
 * The RuntimeDefault seccomp profile: the same idea as containerd's and
 * Docker's defaults, written here as "every x86-64 syscall except those that
 * reach past a container" (kernel modules, keyrings, clocks, namespaces and
 * mounts, tracing other processes...). Some of those come back with the
 * capability that already guards them in the kernel, as upstream does.
 */
import type { OciSeccomp } from '../spec/oci-spec.js';
import { X86_64_SYSCALLS } from './syscalls-x86-64.js';

/** Syscalls refused (EPERM) unless the container holds the capability named. */
const GUARDED: Readonly<Record<string, readonly string[]>> = {
  CAP_SYS_ADMIN: [
    'mount', 'umount2', 'pivot_root', 'unshare', 'setns', 'fanotify_init', 'lookup_dcookie', 'name_to_handle_at', 'quotactl', 'quotactl_fd',
    'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree', 'mount_setattr', 'syslog',
  ],
  CAP_SYS_PTRACE: ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd'],
  CAP_SYS_MODULE: ['init_module', 'finit_module', 'delete_module'],
  CAP_SYS_BOOT: ['reboot', 'kexec_load', 'kexec_file_load'],
  CAP_SYS_TIME: ['settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex'],
  CAP_SYS_PACCT: ['acct'],
  CAP_SYS_RAWIO: ['iopl', 'ioperm'],
  CAP_SYS_NICE: ['mbind', 'set_mempolicy', 'move_pages', 'set_mempolicy_home_node', 'get_mempolicy'],
  CAP_SYS_TTY_CONFIG: ['vhangup'],
  CAP_SYSLOG: ['syslog'],
  CAP_BPF: ['bpf'],
  CAP_PERFMON: ['perf_event_open'],
};

/** Left out of the plain allow-list whatever the capabilities (personality, clone and clone3 come back with conditions below). */
const NEVER = [
  'swapon', 'swapoff', 'add_key', 'request_key', 'keyctl', 'userfaultfd', 'uselib', 'ustat', 'sysfs', '_sysctl',
  'create_module', 'get_kernel_syms', 'query_module', 'nfsservctl', 'afs_syscall', 'tuxcall', 'security', 'vserver',
  'putpmsg', 'getpmsg', 'open_by_handle_at', 'personality', 'clone', 'clone3',
];

/** Namespace-creating clone flags (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET). */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;
/** personality(2) values ordinary programs use: PER_LINUX, PER_LINUX32, UNAME26 (alone and with PER_LINUX32), and the query 0xffffffff. */
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];
const ENOSYS = 38;

/** RuntimeDefault for a container holding `capabilities` (normalised CAP_ names). */
export function runtimeDefaultSeccomp(capabilities: readonly string[]): OciSeccomp {
  const held = new Set(capabilities);
  const refused = new Set(NEVER);
  for (const [cap, names] of Object.entries(GUARDED)) if (!held.has(cap)) for (const n of names) refused.add(n);
  // A syscall guarded by two capabilities (syslog) is allowed by either.
  for (const [cap, names] of Object.entries(GUARDED)) if (held.has(cap)) for (const n of names) refused.delete(n);
  const allowed = Object.keys(X86_64_SYSCALLS).filter((n) => !refused.has(n));
  const syscalls: NonNullable<OciSeccomp['syscalls']> = [
    { names: allowed, action: 'SCMP_ACT_ALLOW' },
    ...PERSONALITIES.map((value) => ({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] })),
    held.has('CAP_SYS_ADMIN')
      ? { names: ['clone'], action: 'SCMP_ACT_ALLOW' }
      : { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
    // clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes libc fall back to clone.
    held.has('CAP_SYS_ADMIN') ? { names: ['clone3'], action: 'SCMP_ACT_ALLOW' } : { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
  ];
  return { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1, architectures: ['SCMP_ARCH_X86_64'], syscalls };
}
