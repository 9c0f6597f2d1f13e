/**
 * Pure mapping of a CRI ContainerConfig plus the image's OCI config to what
 * buildContainerSpec takes, following Kubernetes' and containerd's rules.
 * Files it needs (the image's /etc/passwd and /etc/group, a Localhost
 * seccomp profile) are read by the caller and passed in as text.
 */
import type { ContainerConfig__Output } from '../../cri-api/generated/runtime/v1/ContainerConfig.js';
import type { LinuxContainerResources__Output } from '../../cri-api/generated/runtime/v1/LinuxContainerResources.js';
import type { SecurityProfile__Output } from '../../cri-api/generated/runtime/v1/SecurityProfile.js';
import type { SupplementalGroupsPolicy__Output } from '../../cri-api/generated/runtime/v1/SupplementalGroupsPolicy.js';
import { failedPrecondition, invalidArgument } from '../../cri-api/errors.js';
import { requireAbsolutePath } from '../../cri-api/validate.js';
import type { OciImageConfig } from '../../image-store/index.js';
import type { BindMount, ContainerResources, MountPropagation, OciSeccomp, OciUser } from './oci-spec.js';
import { emptyResources, type MountRecord, type ResourcesRecord } from '../records/store.js';
import { ALL_LINUX_CAPABILITIES, resolveCapabilities } from './capabilities.js';
import { runtimeDefaultSeccomp } from '../seccomp/default-profile.js';
import { refuseUserNamespace } from './user-namespace.js';

/** How the container is to be confined by seccomp. */
export type SeccompChoice = { kind: 'unconfined' } | { kind: 'runtime-default' } | { kind: 'localhost'; path: string };

export interface ImageFiles {
  /** Text of the image's /etc/passwd and /etc/group, when present. */
  passwd?: string;
  group?: string;
}

export interface MappedContainer {
  args: string[];
  env: string[];
  cwd: string;
  user: OciUser;
  readonlyRootfs: boolean;
  capabilities: { add: string[]; drop: string[] };
  privileged: boolean;
  noNewPrivileges: boolean;
  mounts: BindMount[];
  maskedPaths?: string[];
  readonlyPaths?: string[];
  resources: ResourcesRecord;
  seccomp?: OciSeccomp;
  stopSignal: string;
  /** The container shares its pod's (or, in gVisor's terms, its sandbox's) PID namespace. */
  sharedPidNamespace: boolean;
  /** Facts worth one log line each (settings accepted but not enforced). */
  notes: string[];
}

const PROPAGATION: Record<string, MountPropagation> = {
  PROPAGATION_PRIVATE: 'private',
  PROPAGATION_HOST_TO_CONTAINER: 'rslave',
  PROPAGATION_BIDIRECTIONAL: 'rshared',
};

/**
 * Kubernetes' rules: command replaces the image's Entrypoint and then the
 * image's Cmd is not used; args replace Cmd.
 */
export function resolveArgs(command: readonly string[], args: readonly string[], image: OciImageConfig): string[] {
  const entrypoint = command.length > 0 ? command : (image.Entrypoint ?? []);
  const cmd = args.length > 0 ? args : command.length > 0 ? [] : (image.Cmd ?? []);
  return [...entrypoint, ...cmd];
}

/** Image env first, then the CRI env; a later key overrides an earlier one in place. */
export function mergeEnv(imageEnv: readonly string[], criEnv: readonly { key: string; value: string }[]): string[] {
  const out = new Map<string, string>();
  for (const e of imageEnv) {
    const i = e.indexOf('=');
    out.set(i === -1 ? e : e.slice(0, i), e);
  }
  for (const { key, value } of criEnv) out.set(key, `${key}=${value}`);
  return [...out.values()];
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}
interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function parsePasswd(text: string | undefined): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#')) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (Number.isInteger(uid) && Number.isInteger(gid)) out.push({ name: f[0]!, uid, gid });
  }
  return out;
}

function parseGroup(text: string | undefined): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || line.startsWith('#')) continue;
    const gid = Number(f[2]);
    if (Number.isInteger(gid)) out.push({ name: f[0]!, gid, members: (f[3] ?? '').split(',').filter((m) => m !== '') });
  }
  return out;
}

const isNumeric = (s: string): boolean => /^\d+$/.test(s);

function idValue(v: string, field: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw invalidArgument(`${field} must be a uid/gid between 0 and 4294967295, got ${v}`);
  return n;
}

/**
 * The process identity, as containerd derives it: run_as_user, else
 * run_as_username, else the image's User ("name", "uid", "uid:gid",
 * "name:group"); names resolved in the image's /etc/passwd and /etc/group.
 * run_as_group overrides the gid. The additional gids are the primary one
 * and supplemental_groups, plus, under the Merge policy (KEP-3619's default),
 * the groups of the image's /etc/group that list the user as a member;
 * Strict leaves the image's groups out.
 *
 * They are sorted ascending without duplicates: Linux's setgroups(2) sorts
 * the list, gVisor keeps the order it is given, and programs (and `id -G`)
 * show it.
 */
export function resolveUser(
  sc: { runAsUser?: string; runAsUsername?: string; runAsGroup?: string; supplementalGroups: readonly string[]; policy?: SupplementalGroupsPolicy__Output },
  imageUser: string,
  files: ImageFiles,
): OciUser {
  const passwd = parsePasswd(files.passwd);
  const groups = parseGroup(files.group);
  let uid = 0;
  let gid = 0;
  let name: string | undefined;
  const byUid = (u: number): void => {
    uid = u;
    const e = passwd.find((p) => p.uid === u);
    gid = e?.gid ?? 0;
    name = e?.name;
  };
  const byName = (n: string, field: string): void => {
    const e = passwd.find((p) => p.name === n);
    if (!e) throw invalidArgument(`${field}: user "${n}" is not in the image's /etc/passwd`);
    uid = e.uid;
    gid = e.gid;
    name = e.name;
  };
  if (sc.runAsUser !== undefined) {
    byUid(idValue(sc.runAsUser, 'config.linux.security_context.run_as_user'));
  } else if (sc.runAsUsername) {
    byName(sc.runAsUsername, 'config.linux.security_context.run_as_username');
  } else if (imageUser !== '') {
    const [u = '', g] = imageUser.split(':', 2);
    if (isNumeric(u)) byUid(idValue(u, 'image User'));
    else byName(u, `image User "${imageUser}"`);
    if (g !== undefined && g !== '') {
      if (isNumeric(g)) gid = idValue(g, 'image User');
      else {
        const e = groups.find((x) => x.name === g);
        if (!e) throw invalidArgument(`image User "${imageUser}": group "${g}" is not in the image's /etc/group`);
        gid = e.gid;
      }
    }
  }
  if (sc.runAsGroup !== undefined) gid = idValue(sc.runAsGroup, 'config.linux.security_context.run_as_group');
  const extra = [gid];
  if (name !== undefined && sc.policy !== 'Strict') for (const g of groups) if (g.members.includes(name)) extra.push(g.gid);
  for (const s of sc.supplementalGroups) extra.push(idValue(s, 'config.linux.security_context.supplemental_groups'));
  return { uid, gid, additionalGids: [...new Set(extra)].sort((a, b) => a - b) };
}

/** Which seccomp profile the request names (the typed field first, then the legacy path). */
export function seccompChoice(profile: SecurityProfile__Output | null | undefined, legacyPath: string): SeccompChoice {
  if (profile) {
    if (profile.profile_type === 'Unconfined') return { kind: 'unconfined' };
    if (profile.profile_type === 'RuntimeDefault') return { kind: 'runtime-default' };
    const path = requireAbsolutePath(profile.localhost_ref, 'config.linux.security_context.seccomp.localhost_ref');
    return { kind: 'localhost', path };
  }
  if (legacyPath === '' || legacyPath === 'unconfined') return { kind: 'unconfined' };
  if (legacyPath === 'runtime/default' || legacyPath === 'docker/default') return { kind: 'runtime-default' };
  if (legacyPath.startsWith('localhost/')) {
    return { kind: 'localhost', path: requireAbsolutePath(legacyPath.slice('localhost/'.length), 'config.linux.security_context.seccomp_profile_path') };
  }
  throw invalidArgument(`config.linux.security_context.seccomp_profile_path "${legacyPath}" is not unconfined, runtime/default or localhost/<path>`);
}

/** Parses a Localhost seccomp profile (OCI/Docker JSON) into the OCI form runsc loads. */
export function parseSeccompProfile(text: string, path: string): OciSeccomp {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    // The parser's message quotes the text: only the position is given, the profile's content never is.
    const at = /position (\d+)/.exec((err as Error).message)?.[1];
    throw invalidArgument(`seccomp profile ${path} is not JSON${at ? ` (syntax error at position ${at})` : ''}`);
  }
  const p = doc as Partial<OciSeccomp> & { archMap?: { architecture: string; subArchitectures?: string[] }[] };
  if (typeof p !== 'object' || p === null || typeof p.defaultAction !== 'string') throw invalidArgument(`seccomp profile ${path} has no defaultAction`);
  const out: OciSeccomp = { defaultAction: p.defaultAction };
  if (p.defaultErrnoRet !== undefined) out.defaultErrnoRet = p.defaultErrnoRet;
  const arches = p.architectures ?? p.archMap?.flatMap((a) => [a.architecture, ...(a.subArchitectures ?? [])]);
  if (arches && arches.length > 0) out.architectures = arches;
  if (p.flags) out.flags = p.flags;
  if (p.syscalls) {
    out.syscalls = p.syscalls.map((s, i) => {
      if (!Array.isArray(s.names) || typeof s.action !== 'string') throw invalidArgument(`seccomp profile ${path}: syscalls[${i}] needs names and action`);
      return { ...s };
    });
  }
  return out;
}

const int = (v: string | undefined): number => {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
};

/** CRI resources as a plain record (the form kept and reported back). */
export function resourcesRecord(r: LinuxContainerResources__Output | null | undefined): ResourcesRecord {
  if (!r) return emptyResources();
  return {
    cpuPeriod: int(r.cpu_period),
    cpuQuota: int(r.cpu_quota),
    cpuShares: int(r.cpu_shares),
    memoryLimitBytes: int(r.memory_limit_in_bytes),
    oomScoreAdj: int(r.oom_score_adj),
    cpusetCpus: r.cpuset_cpus ?? '',
    cpusetMems: r.cpuset_mems ?? '',
    memorySwapLimitBytes: int(r.memory_swap_limit_in_bytes),
    unified: { ...(r.unified ?? {}) },
  };
}

/** The OCI-side resources (what runsc can apply to the sandbox's cgroup). */
export function specResources(r: ResourcesRecord): ContainerResources {
  return {
    cpuShares: r.cpuShares || undefined,
    cpuQuota: r.cpuQuota || undefined,
    cpuPeriod: r.cpuPeriod || undefined,
    cpusetCpus: r.cpusetCpus || undefined,
    cpusetMems: r.cpusetMems || undefined,
    memoryLimitBytes: r.memoryLimitBytes || undefined,
  };
}

export function mountRecords(mounts: readonly BindMount[]): MountRecord[] {
  const back: Record<MountPropagation, string> = { private: 'PROPAGATION_PRIVATE', rslave: 'PROPAGATION_HOST_TO_CONTAINER', rshared: 'PROPAGATION_BIDIRECTIONAL' };
  return mounts.map((m) => ({
    containerPath: m.containerPath,
    hostPath: m.hostPath,
    readonly: m.readonly,
    propagation: back[m.propagation ?? 'private'],
    ...(m.recursiveReadOnly ? { recursiveReadOnly: true } : {}),
    ...(m.image ? { image: m.image } : {}),
  }));
}

export interface MapInput {
  config: ContainerConfig__Output;
  image: OciImageConfig;
  files: ImageFiles;
  /** Text of the Localhost seccomp profile, when seccompChoice said "localhost". */
  seccompProfileText?: string;
  /** The pod asked for privileged (a privileged container needs a privileged pod). */
  podPrivileged: boolean;
  /** AppArmor profiles loaded on the host; undefined when AppArmor is off. */
  appArmorProfiles?: ReadonlySet<string>;
  /** Image volumes by mount index, resolved by the caller (see imageVolumeRequests). */
  imageVolumes?: ReadonlyMap<number, { hostPath: string; image: string; imageRef: string }>;
}

/** The mounts that are image volumes (KEP 4639), by index: the caller resolves them to snapshots. */
export function imageVolumeRequests(config: ContainerConfig__Output): { index: number; image: string; subPath: string }[] {
  return config.mounts.flatMap((m, index) => {
    if (!m.image?.image) return [];
    if (!m.readonly) throw invalidArgument(`config.mounts[${index}]: an image volume is always read-only; set readonly`);
    if (m.host_path) throw invalidArgument(`config.mounts[${index}]: an image volume has no host_path`);
    return [{ index, image: m.image.image, subPath: m.image_sub_path }];
  });
}

export function mapContainerConfig(input: MapInput): MappedContainer {
  const { config, image } = input;
  const sc = config.linux?.security_context ?? null;
  const notes: string[] = [];
  if (config.devices.length > 0 || config.CDI_devices.length > 0) {
    throw invalidArgument('config.devices: gVisor does not pass host devices into the sandbox; remove the devices from the container');
  }
  const args = resolveArgs(config.command, config.args, image);
  if (args.length === 0) throw invalidArgument('config.command: neither the container nor its image names a command to run');
  const env = mergeEnv(image.Env ?? [], config.envs.map((kv) => {
    if (kv.key === '') throw invalidArgument('config.envs has an entry with an empty key');
    return { key: kv.key, value: Buffer.isBuffer(kv.value) ? kv.value.toString('utf8') : String(kv.value ?? '') };
  }));
  const cwd = config.working_dir || image.WorkingDir || '/';
  if (!cwd.startsWith('/')) throw invalidArgument(`config.working_dir "${cwd}" must be an absolute path`);

  refuseUserNamespace(sc?.namespace_options?.userns_options, 'config.linux.security_context.namespace_options.userns_options');
  // containerd's rule: a group alone would run as root with that group, which is not what was asked.
  if (sc?.run_as_group && !sc.run_as_user && !sc.run_as_username) {
    throw invalidArgument('config.linux.security_context.run_as_group is set without run_as_user or run_as_username');
  }
  const user = resolveUser(
    {
      runAsUser: sc?.run_as_user ? sc.run_as_user.value : undefined,
      runAsUsername: sc?.run_as_username || undefined,
      runAsGroup: sc?.run_as_group ? sc.run_as_group.value : undefined,
      supplementalGroups: sc?.supplemental_groups ?? [],
      policy: sc?.supplemental_groups_policy,
    },
    image.User ?? '',
    input.files,
  );

  const mounts: BindMount[] = config.mounts.map((m, i) => {
    const containerPath = requireAbsolutePath(m.container_path, `config.mounts[${i}].container_path`);
    const volume = input.imageVolumes?.get(i);
    if (volume) return { containerPath, hostPath: volume.hostPath, readonly: true, propagation: 'private', image: { image: volume.image, imageRef: volume.imageRef } };
    const hostPath = requireAbsolutePath(m.host_path, `config.mounts[${i}].host_path`);
    if (m.propagation === 'PROPAGATION_BIDIRECTIONAL') {
      throw invalidArgument(`config.mounts[${i}].propagation: Bidirectional cannot work in gVisor (mounts made inside the sandbox never reach the host); use HostToContainer`);
    }
    // The CRI comment's rule (KEP-3857): recursive read-only needs readonly and private propagation.
    if (m.recursive_read_only && !m.readonly) throw invalidArgument(`config.mounts[${i}].recursive_read_only needs readonly: true`);
    if (m.recursive_read_only && m.propagation !== 'PROPAGATION_PRIVATE') {
      throw invalidArgument(`config.mounts[${i}].recursive_read_only needs propagation PROPAGATION_PRIVATE, got ${m.propagation}`);
    }
    return { containerPath, hostPath, readonly: m.readonly, propagation: PROPAGATION[m.propagation] ?? 'private', ...(m.recursive_read_only ? { recursiveReadOnly: true } : {}) };
  });

  const privileged = sc?.privileged ?? false;
  if (privileged && !input.podPrivileged) throw invalidArgument('config.linux.security_context.privileged: a privileged container needs a privileged pod sandbox');
  if (privileged) notes.push('privileged containers are privileged inside the gVisor sandbox only, never on the host');

  let seccomp: OciSeccomp | undefined;
  const choice = seccompChoice(sc?.seccomp, sc?.seccomp_profile_path ?? '');
  if (choice.kind === 'runtime-default') {
    // Which syscalls come back with their capability depends on the container's set.
    const caps = resolveCapabilities({ add: sc?.capabilities?.add_capabilities ?? [], drop: sc?.capabilities?.drop_capabilities ?? [], privileged: false, known: ALL_LINUX_CAPABILITIES });
    seccomp = runtimeDefaultSeccomp(caps);
  }
  if (choice.kind === 'localhost') {
    if (input.seccompProfileText === undefined) throw invalidArgument(`config.linux.security_context.seccomp: profile ${choice.path} was not read`);
    seccomp = parseSeccompProfile(input.seccompProfileText, choice.path);
  }
  // Privileged containers run unconfined, as with runc.
  if (privileged) seccomp = undefined;
  const appArmor = appArmorProfileName(sc?.apparmor, sc?.apparmor_profile ?? '');
  if (appArmor !== undefined && input.appArmorProfiles && !input.appArmorProfiles.has(appArmor)) {
    throw failedPrecondition(`config.linux.security_context.apparmor: profile "${appArmor}" is not loaded on this node (see /sys/kernel/security/apparmor/profiles)`);
  }
  if ((sc?.apparmor && sc.apparmor.profile_type !== 'Unconfined') || (sc?.apparmor_profile && sc.apparmor_profile !== 'unconfined')) notes.push('AppArmor profiles are accepted but not applied: the gVisor sandbox is the isolation boundary');
  if (sc?.selinux_options && (sc.selinux_options.type || sc.selinux_options.level || sc.selinux_options.user || sc.selinux_options.role)) {
    notes.push('SELinux options are accepted but not applied: the gVisor sandbox is the isolation boundary');
  }

  const stopSignal = config.stop_signal && config.stop_signal !== 'RUNTIME_DEFAULT' ? config.stop_signal : image.StopSignal || 'SIGTERM';
  return {
    args,
    env,
    cwd,
    user,
    readonlyRootfs: sc?.readonly_rootfs ?? false,
    capabilities: { add: [...(sc?.capabilities?.add_capabilities ?? [])], drop: [...(sc?.capabilities?.drop_capabilities ?? [])] },
    privileged,
    noNewPrivileges: sc?.no_new_privs ?? false,
    mounts,
    maskedPaths: sc && sc.masked_paths.length > 0 ? [...sc.masked_paths] : undefined,
    readonlyPaths: sc && sc.readonly_paths.length > 0 ? [...sc.readonly_paths] : undefined,
    resources: resourcesRecord(config.linux?.resources),
    seccomp,
    stopSignal,
    // TARGET (a debug container joining another's) sees every process of the pod that way too.
    sharedPidNamespace: ['POD', 'NODE', 'TARGET'].includes(sc?.namespace_options?.pid ?? 'CONTAINER'),
    notes,
  };
}

/** The Localhost AppArmor profile a container names (typed field first, then the legacy one); undefined for none. */
export function appArmorProfileName(profile: SecurityProfile__Output | null | undefined, legacy: string): string | undefined {
  if (profile) return profile.profile_type === 'Localhost' ? profile.localhost_ref : undefined;
  return legacy.startsWith('localhost/') ? legacy.slice('localhost/'.length) : undefined;
}
