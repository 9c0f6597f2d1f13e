/** The cgroup component: where pod sandboxes live, their limits, OOM counters, usage and sweep. */
export { CgroupManager, SWEEP_GRACE_MS, type CgroupManagerOptions, type CgroupUsage, type OomCounters } from './manager.js';
export { sandboxLimits, sharesToWeight, CPU_PERIOD_US, SANDBOX_CPU_SHARES, DEFAULT_SANDBOX_OVERHEAD, type ContainerLimits, type SandboxLimits, type SandboxOverhead } from './limits.js';
export { ancestors, CgroupPathError, DEFAULT_CGROUP_PARENT, defaultParentFor, expandSlice, sandboxCgroupPath, systemdCgroupPath, SYSTEMD_SCOPE_PREFIX, type CgroupDriver } from './paths.js';
export { allRoots, controllerRoot, parseMountinfo, readLayout, type CgroupLayout } from './hierarchy.js';
