import type { CallContext } from '../../cri-api/server.js';
import type { RunPodSandboxRequest__Output } from '../../cri-api/generated/runtime/v1/RunPodSandboxRequest.js';
import type { RunPodSandboxResponse } from '../../cri-api/generated/runtime/v1/RunPodSandboxResponse.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, wrapError } from '../../cri-api/errors.js';
import { optionalAbsolutePath, requireMessage, requireString, requireStringMap, requireSysctls } from '../../cri-api/validate.js';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { PodSandboxConfig__Output } from '../../cri-api/generated/runtime/v1/PodSandboxConfig.js';
import { writePodFiles, writePodHosts, type PortMapping } from '../../network/index.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import { sideBySide } from '../../common/index.js';
import { rollbackSandbox } from '../core/teardown.js';
import { SANDBOX_CPU_SHARES } from '../cgroups/index.js';
import { newRecordId, nowNs, podLabel, type SandboxRecord } from '../records/store.js';
import type { RunscFeatures } from '../runsc/features.js';
import { podRunscFlags, recordedRunscFlags } from '../runsc/gvisor-flags.js';
import type { CreateSandboxInput } from '../runsc/sandbox-driver.js';
import { refuseUserNamespace } from '../spec/user-namespace.js';
import { resourcesRecord } from '../spec/container-config.js';
import { buildExecProcess, buildSandboxSpec } from '../spec/oci-spec.js';

/** Runtime handlers this runtime answers to: the default and RuntimeClass "runsc". */
export const POD_RUNTIME_HANDLERS: readonly string[] = ['', 'runsc'];

/**
 * Validates, reserves the pod's name (its record is written before anything
 * is made, so a crash mid-way is rolled back at restart), then brings up the
 * network, the pod's /etc files and the runsc sandbox; any failure undoes
 * what exists, and so does the end of the call (deadline passed, client
 * gone), checked between steps.
 */
export async function RunPodSandbox(rt: PodRuntime, req: RunPodSandboxRequest__Output, ctx: CallContext): Promise<RunPodSandboxResponse> {
  const config = requireMessage(req.config, 'config');
  const meta = requireMessage(config.metadata, 'config.metadata');
  requireString(meta.name, 'config.metadata.name');
  requireString(meta.uid, 'config.metadata.uid');
  requireString(meta.namespace, 'config.metadata.namespace');
  requireStringMap(config.labels, 'config.labels');
  requireStringMap(config.annotations, 'config.annotations');
  optionalAbsolutePath(config.log_directory, 'config.log_directory');
  requireSysctls(config.linux?.sysctls, 'config.linux.sysctls');
  if (!POD_RUNTIME_HANDLERS.includes(req.runtime_handler)) {
    throw notFound(`runtime handler "${req.runtime_handler}" not found; this runtime serves ${POD_RUNTIME_HANDLERS.map((h) => `"${h}"`).join(' and ')}`);
  }
  const key = `${meta.name}_${meta.namespace}_${meta.uid}_${meta.attempt}`;
  // Checked before anything exists: a refused flag leaves nothing behind.
  podRunscFlags(config.annotations, rt.opts.gvisorFlagAllowlist ?? []);
  const nsOpts = config.linux?.security_context?.namespace_options;
  refuseUserNamespace(nsOpts?.userns_options, 'config.linux.security_context.namespace_options.userns_options');
  const cgroupParent = config.linux?.cgroup_parent || undefined;
  try {
    rt.cgroups.pathFor(cgroupParent, '0'.repeat(64));
  } catch (err) {
    throw invalidArgument(`config.linux.cgroup_parent: ${(err as Error).message} (cgroup driver ${rt.cgroups.driver})`);
  }
  const features = rt.requireFeatures();
  const rec = await rt.locks.run(`pod-name:${key}`, async () => {
    ctx.signal.throwIfAborted();
    const dup = rt.sandboxes.list().find((s) => s.name === meta.name && s.namespace === meta.namespace && s.uid === meta.uid && s.attempt === meta.attempt);
    if (dup) throw alreadyExists(`pod sandbox ${meta.namespace}/${meta.name} (uid ${meta.uid}, attempt ${meta.attempt}) already exists as ${dup.id}; remove it first`);
    const id = newRecordId();
    const r: SandboxRecord = {
      id,
      name: meta.name,
      namespace: meta.namespace,
      uid: meta.uid,
      attempt: meta.attempt,
      phase: 'creating',
      createdAtNs: nowNs(),
      runtimeHandler: req.runtime_handler,
      labels: { ...config.labels },
      annotations: { ...config.annotations },
      // containerd's rule: a pod without a hostname gets the node's (a pod name need not be a valid host name).
      hostname: config.hostname || osHostname(),
      logDirectory: config.log_directory,
      hostNetwork: nsOpts?.network === 'NODE',
      namespaceModes: { network: nsOpts?.network ?? 'POD', pid: nsOpts?.pid ?? 'POD', ipc: nsOpts?.ipc ?? 'POD' },
      privileged: config.linux?.security_context?.privileged ?? false,
      ips: [],
      // Known before the cgroup is made: a crash after this point is rolled back at restart and takes the cgroup with it.
      cgroup: { path: rt.cgroups.pathFor(cgroupParent, id), made: [] },
    };
    if (config.linux?.resources || config.linux?.overhead) r.podResources = { resources: resourcesRecord(config.linux.resources), overhead: resourcesRecord(config.linux.overhead) };
    // Written before anything is made, so a crash mid-way is rolled back at restart.
    await rt.sandboxes.put(r);
    return r;
  });
  const id = await rt.locks.run(rec.id, async () => {
    try {
      await bringUpSandbox(rt, rec, config, features, ctx.signal);
    } catch (err) {
      await rollbackSandbox(rt, rec);
      throw wrapError(err, `run pod sandbox ${meta.namespace}/${meta.name}`);
    }
    rt.logger.info({ pod: podLabel(rec), ips: rec.ips, hostNetwork: rec.hostNetwork }, 'pod sandbox ready');
    // As containerd: the sandbox's own events carry its id as container_id.
    rt.emit('CONTAINER_CREATED_EVENT', rec.id, rec);
    rt.emit('CONTAINER_STARTED_EVENT', rec.id, rec);
    return rec.id;
  });
  return { pod_sandbox_id: id };
}

async function bringUpSandbox(rt: PodRuntime, rec: SandboxRecord, config: PodSandboxConfig__Output, features: RunscFeatures, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  const cgroup = rec.cgroup!;
  const dns = config.dns_config ? { servers: [...config.dns_config.servers], searches: [...config.dns_config.searches], options: [...config.dns_config.options] } : undefined;
  const dir = rt.podDir(rec.id);
  // Independent steps side by side: the cgroup, the netns (its CNI cache entry
  // written first), the /etc files (hosts gets the pod's addresses after ADD).
  // What the cgroup step made is kept at once: a sibling's failure must not hide it from the rollback.
  const [, netns, etcFiles] = await sideBySide([
    rt.cgroups.create(cgroup.path).then((made) => {
      cgroup.made = made;
    }),
    rec.hostNetwork ? undefined : rt.opts.network.prepare({ podId: rec.id, name: rec.name, namespace: rec.namespace, uid: rec.uid, portMappings: portMappings(config), dns }),
    writePodFiles(join(dir, 'etc'), { hostname: rec.hostname, dns, ips: [] }),
  ]);
  rec.netnsPath = netns?.netnsPath;
  rec.etcFiles = etcFiles;
  // The leaf goes with the record's path anyway; ancestors made for it must be on disk before anything else can crash.
  if (cgroup.made.some((d) => d !== cgroup.path)) await rt.sandboxes.put(rec);
  signal.throwIfAborted();
  const spec = buildSandboxSpec({
    id: rec.id,
    hostname: rec.hostname,
    rootfsDir: rt.opts.infra.rootfsDir,
    args: rt.opts.infra.args,
    netnsPath: rec.netnsPath,
    annotations: {
      'io.kubernetes.cri.sandbox-name': rec.name,
      'io.kubernetes.cri.sandbox-namespace': rec.namespace,
      'io.kubernetes.cri.sandbox-uid': rec.uid,
    },
    cgroupsPath: cgroup.path,
    // The sentry boots with the least CPU weight; CreateContainer sets the containers' sum.
    resources: { cpu: { shares: SANDBOX_CPU_SHARES } },
    sysctls: config.linux?.sysctls,
    etcFiles,
    daemonOomScoreAdj: rt.daemonOomScoreAdj,
  });
  const sandbox: CreateSandboxInput = {
    id: rec.id,
    bundleDir: join(dir, 'bundle'),
    spec,
    networkMode: rec.hostNetwork ? 'host' : 'sandbox',
    netnsPath: rec.netnsPath,
    needsNetnsWorkaround: features.netnsWorkaround,
    logPath: join(dir, 'sandbox.log'),
    runscFlags: recordedRunscFlags(rec.annotations),
  };
  // runsc copies the netns's interfaces into the sandbox at start, not at
  // create: CNI ADD runs while the sandbox boots. Both settle before a
  // failure is thrown, so the rollback finds everything either made.
  const [net] = await sideBySide([
    rec.hostNetwork ? undefined : rt.opts.network.add(rec.id, signal).then(async (n) => {
      await writePodHosts(etcFiles.hosts, { hostname: rec.hostname, ips: n.ips });
      return n;
    }),
    rt.driver.prepareSandbox(sandbox),
  ]);
  rec.ips = net?.ips ?? [];
  signal.throwIfAborted();
  rec.pid = await rt.driver.startSandbox(sandbox);
  signal.throwIfAborted();
  await checkSysctls(rt, rec, config.linux?.sysctls ?? {});
  signal.throwIfAborted();
  rec.phase = 'ready';
  await rt.sandboxes.put(rec);
}

function portMappings(config: PodSandboxConfig__Output): PortMapping[] {
  return config.port_mappings.map((p) => ({
    protocol: p.protocol === 'UDP' ? 'udp' : p.protocol === 'SCTP' ? 'sctp' : 'tcp',
    containerPort: p.container_port,
    hostPort: p.host_port,
    hostIp: p.host_ip,
  }));
}

/**
 * gVisor's kernel implements only some sysctls and runsc skips the others
 * silently; Kubernetes expects a pod's sysctls to hold, so each one is read
 * back inside the sandbox and a pod that cannot have them fails clearly.
 */
async function checkSysctls(rt: PodRuntime, rec: SandboxRecord, sysctls: Record<string, string>): Promise<void> {
  const wanted = Object.entries(sysctls);
  const busybox = rt.opts.infra.busybox;
  if (wanted.length === 0 || !busybox) return;
  // The names are the script's arguments, never its text: the shell does not parse them.
  const script = 'for p in "$@"; do cat "/proc/sys/$p" 2>/dev/null || echo "<absent>"; done';
  const proc = buildExecProcess({ args: [busybox, 'sh', '-c', script, 'sh', ...wanted.map(([k]) => k.replaceAll('.', '/'))], env: [], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false, capabilities: [] });
  const r = await rt.driver.execSync(rec.id, proc, 10_000);
  const got = r.stdout.toString().split('\n');
  const wrong = wanted.filter(([, v], i) => (got[i] ?? '').trim().replace(/\s+/g, ' ') !== v.trim().replace(/\s+/g, ' '));
  if (wrong.length > 0) {
    const what = wrong.map(([k, v]) => `${k}=${v} (inside gVisor: ${(got[wanted.findIndex(([x]) => x === k)] ?? '').trim() || 'unreadable'})`).join(', ');
    throw failedPrecondition(`sysctls gVisor does not honour: ${what}; remove them from the pod or run it with another runtime`);
  }
}
