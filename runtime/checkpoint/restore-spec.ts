/**
 * The checkpointed container's OCI spec moved into its new pod. A checkpoint
 * archive is a file anyone may have edited, so nothing in its spec that
 * reaches the host is taken as it is: every host path comes from the new
 * CreateContainer config or from this node, capabilities and privilege are
 * bounded by the new config, seccomp is the new config's, runsc flags are
 * the new pod's allow-listed ones, and fields gvisor-cri never writes
 * (hooks, host namespaces, cgroup paths, other annotations) are refused or
 * dropped. What stays from the archive is the process as it ran inside the
 * sandbox: args, env, user, cwd, rlimits.
 */
import { basename, posix } from 'node:path';
import { failedPrecondition, invalidArgument } from '../../cri-api/errors.js';
import { FLAG_ANNOTATION_PREFIX, flagAnnotations } from '../runsc/gvisor-flags.js';
import { SECCOMP_HELPER_PATH } from '../seccomp/exec-helper.js';
import type { OciLinux, OciMount, OciNamespace, OciSeccomp, OciSpec, PodEtcFiles } from '../spec/oci-spec.js';
import { ANNOTATION_SANDBOX_ID } from '../spec/oci-spec.js';

/** Filesystems with no host source: a checkpointed mount of another type is refused. */
const PSEUDO_FILESYSTEMS: ReadonlySet<string> = new Set(['proc', 'tmpfs', 'devpts', 'mqueue', 'sysfs', 'cgroup', 'cgroup2']);
/** Namespaces a container spec of gvisor-cri has, never with a path (a path would join a host namespace). */
const CONTAINER_NAMESPACES: ReadonlySet<string> = new Set(['pid', 'ipc', 'uts', 'mount']);
/** The only annotations gvisor-cri writes into a container spec besides the pod's runsc flags. */
const CRI_ANNOTATION_PREFIX = 'io.kubernetes.cri.';

export interface RestoreSpecInput {
  sandboxId: string;
  rootfsDir: string;
  hostname: string;
  /** The checkpointed pod's and the new pod's resolv.conf/hosts/hostname. */
  oldEtcFiles?: PodEtcFiles;
  newEtcFiles?: PodEtcFiles;
  /** The new config's volumes: the only host paths a restored container gets besides the node's own files. */
  mounts: readonly { containerPath: string; hostPath: string; readonly: boolean }[];
  /** This node's seccomp exec helper. */
  seccompHelper?: string;
  /** This node's empty, unreadable file that masks paths (PodRuntime.maskFile). */
  maskFile: string;
  /** What the new config allows: the capability list (resolveCapabilities), privilege, no_new_privs. */
  capabilities: readonly string[];
  privileged: boolean;
  noNewPrivileges: boolean;
  /** Paths the new config masks and makes read-only (its own or the defaults; empty when privileged). */
  maskedPaths: readonly string[];
  readonlyPaths: readonly string[];
  /** The new config's seccomp profile; undefined for unconfined. */
  seccomp?: OciSeccomp;
  /** The new pod's allow-listed runsc flags (gvisor-flags.ts). */
  runscFlags: Readonly<Record<string, string>>;
  /** The daemon's own oom_score_adj: a container never gets a lower one. */
  minOomScoreAdj: number;
}

/**
 * The spec to restore `saved` with in the new pod, or INVALID_ARGUMENT
 * naming everything in `saved` the new config does not allow. The set of
 * mounts stays as checkpointed (runsc matches restored mounts against the
 * saved ones by destination); only their sources change.
 */
export function restoreContainerSpec(saved: OciSpec, input: RestoreSpecInput): OciSpec {
  const refused: string[] = [];
  const mounts = restoredMounts(saved, input, refused);

  const allowed = new Set(input.capabilities);
  const caps = saved.process.capabilities;
  const held = caps ? [...caps.bounding, ...caps.effective, ...caps.permitted, ...(caps.inheritable ?? []), ...(caps.ambient ?? [])] : [];
  const extra = [...new Set(held.filter((c) => !allowed.has(c)))];
  if (extra.length > 0) refused.push(`capabilities ${extra.join(', ')} (the new config allows ${input.capabilities.join(', ') || 'none'})`);
  if (input.noNewPrivileges && !saved.process.noNewPrivileges) refused.push('a process without no_new_privs (the new config sets no_new_privs)');
  const missing = (want: readonly string[], have: readonly string[] | undefined): string[] => want.filter((p) => !(have ?? []).includes(p));
  const unmasked = missing(input.maskedPaths, saved.linux.maskedPaths);
  if (unmasked.length > 0) refused.push(`unmasked paths ${unmasked.join(', ')} (the new config masks them)`);
  const writable = missing(input.readonlyPaths, saved.linux.readonlyPaths);
  if (writable.length > 0) refused.push(`writable paths ${writable.join(', ')} (the new config makes them read-only)`);

  const namespaces: OciNamespace[] = [];
  for (const ns of saved.linux.namespaces) {
    if (ns.path !== undefined || !CONTAINER_NAMESPACES.has(ns.type)) refused.push(`namespace ${ns.type}${ns.path !== undefined ? ` at ${ns.path}` : ''}`);
    else namespaces.push({ type: ns.type });
  }

  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(saved.annotations)) {
    if (key.startsWith(FLAG_ANNOTATION_PREFIX)) {
      if (input.runscFlags[key.slice(FLAG_ANNOTATION_PREFIX.length)] !== value) refused.push(`annotation ${key} (not a runsc flag this pod is allowed; see gvisor-flag-allowlist)`);
    } else if (key.startsWith(CRI_ANNOTATION_PREFIX)) {
      annotations[key] = value;
    } else {
      refused.push(`annotation ${key} (gvisor-cri writes none such)`);
    }
  }
  // Fields of the OCI spec gvisor-cri never writes: hooks would run on the host.
  const extraFields = Object.keys(saved).filter((k) => !['ociVersion', 'process', 'root', 'hostname', 'mounts', 'annotations', 'linux'].includes(k));
  if (extraFields.length > 0) refused.push(`spec fields ${extraFields.join(', ')}`);

  if (refused.length > 0) throw invalidArgument(`the checkpointed container has what the new container config does not give it: ${refused.join('; ')}`);

  const linux: OciLinux = { namespaces };
  if (saved.linux.resources) linux.resources = saved.linux.resources;
  if (saved.linux.sysctl) linux.sysctl = saved.linux.sysctl;
  if (input.seccomp) linux.seccomp = input.seccomp;
  if (saved.linux.maskedPaths) linux.maskedPaths = [...saved.linux.maskedPaths];
  if (saved.linux.readonlyPaths) linux.readonlyPaths = [...saved.linux.readonlyPaths];
  const p = saved.process;
  return {
    ociVersion: saved.ociVersion,
    process: {
      terminal: p.terminal,
      user: p.user,
      args: p.args,
      env: p.env,
      cwd: p.cwd,
      ...(p.capabilities ? { capabilities: p.capabilities } : {}),
      ...(p.rlimits ? { rlimits: p.rlimits } : {}),
      noNewPrivileges: p.noNewPrivileges,
      oomScoreAdj: Math.max(p.oomScoreAdj ?? 0, input.minOomScoreAdj),
    },
    root: { path: input.rootfsDir, readonly: saved.root.readonly },
    hostname: input.hostname,
    mounts,
    annotations: { ...annotations, ...flagAnnotations(input.runscFlags), [ANNOTATION_SANDBOX_ID]: input.sandboxId },
    linux,
  };
}

/** `saved`'s mounts with sources this node chooses; what has none is added to `refused`. */
function restoredMounts(saved: OciSpec, input: RestoreSpecInput, refused: string[]): OciMount[] {
  const unknown = input.mounts.filter((m) => !saved.mounts.some((s) => s.destination === m.containerPath && isBind(s)));
  if (unknown.length > 0) {
    throw invalidArgument(`restore cannot add mounts the checkpointed container did not have: ${unknown.map((m) => m.containerPath).join(', ')}`);
  }
  const etc = new Map<string, { old?: string; next?: string }>([
    ['/etc/hosts', { old: input.oldEtcFiles?.hosts, next: input.newEtcFiles?.hosts }],
    ['/etc/resolv.conf', { old: input.oldEtcFiles?.resolvConf, next: input.newEtcFiles?.resolvConf }],
    ['/etc/hostname', { old: input.oldEtcFiles?.hostname, next: input.newEtcFiles?.hostname }],
  ]);
  const savedRoot = saved.root.path.replace(/\/+$/, '');
  const out: OciMount[] = [];
  for (const m of saved.mounts) {
    const source = m.source ?? '';
    if (!isBind(m)) {
      if (PSEUDO_FILESYSTEMS.has(m.type ?? '')) out.push({ ...m });
      else refused.push(`mount ${m.destination} of type ${m.type ?? '(none)'}`);
      continue;
    }
    const bind = (src: string, readonly: boolean): void => {
      const options = (m.options ?? []).filter((o) => o !== 'rw' && o !== 'ro');
      out.push({ ...m, source: src, options: [...options, readonly || (m.options ?? []).includes('ro') ? 'ro' : 'rw'] });
    };
    const volume = input.mounts.find((v) => v.containerPath === m.destination);
    if (volume) {
      bind(volume.hostPath, volume.readonly);
      continue;
    }
    // A host submount under a volume (submountsOf): the same place under the volume's new host path.
    const parent = input.mounts.find((v) => m.destination.startsWith(`${v.containerPath.replace(/\/+$/, '')}/`));
    if (parent) {
      const rel = m.destination.slice(parent.containerPath.replace(/\/+$/, '').length);
      if (source.endsWith(rel) && !rel.split('/').includes('..')) {
        bind(`${parent.hostPath.replace(/\/+$/, '')}${rel}`, parent.readonly);
        continue;
      }
    }
    const e = etc.get(m.destination);
    if (e && e.old !== undefined && source === e.old) {
      if (!e.next) throw failedPrecondition(`the new pod has no ${m.destination} to give the restored container`);
      bind(e.next, false);
      continue;
    }
    if (m.destination === SECCOMP_HELPER_PATH) {
      if (!input.seccompHelper) throw failedPrecondition(`the checkpointed container has the seccomp exec helper at ${SECCOMP_HELPER_PATH}; this node has none`);
      bind(input.seccompHelper, true);
      continue;
    }
    // A read-only path (path-mounts.ts): a file of the image, bound over itself.
    const rel = posix.normalize(source.slice(savedRoot.length));
    if (source.startsWith(`${savedRoot}/`) && !rel.split('/').includes('..')) {
      bind(posix.join(input.rootfsDir, rel), true);
      continue;
    }
    // A masked file (path-mounts.ts): bound to the node's mask file.
    if (basename(source) === basename(input.maskFile)) {
      bind(input.maskFile, true);
      continue;
    }
    refused.push(`mount ${m.destination} of host path ${source} (no mount of the new config has container_path ${m.destination})`);
  }
  return out;
}

function isBind(m: OciMount): boolean {
  return m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}
