import { join } from 'node:path';
import { access, constants } from 'node:fs/promises';
import type { Launcher } from '../common/index.js';
import type { Logger } from '../cri-api/logger.js';
import { ImageStore } from '../image-store/index.js';
import { NetworkManager } from '../network/index.js';
import { CgroupManager, ensureInfraRootfs, loadTraceSessionConfig, missingSinkEndpoints, openPodRuntime, PodRuntime, probeRunscFeatures, Reaper, ReaperLauncher, Runsc, RuntimeStreamBackend, type Condition, type InfraRootfs, type RunscFeatures, type RuntimeInfo, type TraceSessionConfig } from '../runtime/index.js';
import { StreamServer } from '../stream/index.js';
import { configToToml, type Config } from './config.js';
import { criRuntimeVersion, versionInfo } from './version.js';
import { DaemonMetrics, startMetricsServer, type MetricsServer } from './metrics.js';
import { AuditLog } from './audit.js';

/** Runtime handler names we serve: the default one and an explicit "runsc" for RuntimeClass. */
export const RUNTIME_HANDLERS = ['', 'runsc'] as const;

/** Everything the RPC handlers work with, opened once at start-up. */
export interface Services {
  config: Config;
  logger: Logger;
  info: RuntimeInfo;
  images: ImageStore;
  network: NetworkManager;
  /** Pods and containers (RuntimeService lifecycle RPCs). */
  rt: PodRuntime;
  runsc: Runsc;
  infra: InfraRootfs;
  /** Undefined while runsc is missing or unusable (RuntimeReady=false says why). */
  features: RunscFeatures | undefined;
  /** Serves the URLs that Exec, Attach and PortForward return. */
  streams: StreamServer;
  streamUrl: string;
  metrics: DaemonMetrics;
  /** The /metrics endpoint; undefined unless metrics-port is set. */
  metricsServer: MetricsServer | undefined;
  audit: AuditLog;
  close(): Promise<void>;
}

export function runscFor(config: Config, features?: Pick<RunscFeatures, 'overlay2' | 'ociSeccomp'>, onCommand?: (subcommand: string, ms: number, ok: boolean) => void, reaper?: Reaper, launcher?: Launcher): Runsc {
  const overlay = config.overlayMedium === 'memory' ? 'root:memory' : `root:dir=${join(config.runDir, 'overlay')}`;
  return new Runsc({
    binary: config.runsc,
    root: join(config.runDir, 'runsc'),
    platform: config.runscPlatform,
    overlay2: features === undefined || features.overlay2 ? overlay : undefined,
    ociSeccomp: features?.ociSeccomp ?? false,
    extraFlags: config.runscExtraFlags,
    podInitConfig: config.traceSessionConfig || undefined,
    onCommand,
    reaper,
    launcher,
  });
}

/** Probes runsc; a failure is reported as a not-ready condition, not a crash, so Status can tell kubelet why. */
async function probeRuntime(config: Config, infra: InfraRootfs, cgroups: CgroupManager, logger: Logger): Promise<{ features?: RunscFeatures; condition: Condition }> {
  try {
    await access(config.runsc, constants.X_OK);
  } catch {
    return { condition: { ready: false, reason: 'RunscNotFound', message: `runsc not found or not executable at ${config.runsc} (set --runsc)` } };
  }
  // The probe sandbox too lives under the daemon-wide parent, never at a hierarchy's root.
  const cgroupsPath = cgroups.pathFor(undefined, `probe-${process.pid}`);
  try {
    const made = await cgroups.create(cgroupsPath);
    try {
      const features = await probeRunscFeatures({ runsc: runscFor(config), workDir: join(config.runDir, 'probe'), infra, cgroupsPath, logger });
      return { features, condition: { ready: true, reason: '', message: '' } };
    } finally {
      await cgroups.remove(cgroupsPath, made).catch((err: unknown) => logger.warn({ err, cgroup: cgroupsPath }, 'removing the runsc probe\'s cgroup failed'));
    }
  } catch (err) {
    return { condition: { ready: false, reason: 'RunscNotUsable', message: `runsc at ${config.runsc} does not work: ${(err as Error).message}` } };
  }
}

/** A configured trace session must be usable: checked at start, so a typo never leaves pods unmonitored. */
async function checkTraceSession(session: TraceSessionConfig, features: RunscFeatures | undefined, logger: Logger): Promise<void> {
  if (features && !features.traceSessions) throw new Error(`trace-session-config ${session.path}: runsc ${features.version} has no trace sessions (runsc trace, --pod-init-config)`);
  for (const sink of await missingSinkEndpoints(session)) {
    logger.warn({ session: session.name, sink: sink.name, endpoint: sink.endpoint, ignoreSetupError: sink.ignoreSetupError }, sink.ignoreSetupError
      ? 'trace sink socket not there: pods started before it listens run without the trace session'
      : 'trace sink socket not there: pods fail to start until it listens');
  }
  logger.info({ session: session.name, points: session.points.length, sinks: session.sinks.map((k) => k.endpoint ?? k.name) }, 'every new sandbox starts with this trace session');
}

export async function openServices(config: Config, logger: Logger): Promise<Services> {
  // Read before anything is made: a bad file stops the daemon with nothing to undo.
  const traceSession = config.traceSessionConfig ? await loadTraceSessionConfig(config.traceSessionConfig) : undefined;
  const infra = await ensureInfraRootfs(config.stateDir);
  const cgroups = await CgroupManager.open({
    driver: config.cgroupDriver,
    defaultParent: config.cgroupParent,
    overhead: { memoryBytes: config.sandboxOverheadMemory * 1024 * 1024, cpuMillis: config.sandboxOverheadCpu },
    logger: logger.child({ module: 'cgroups' }),
  });
  let probe = await probeRuntime(config, infra, cgroups, logger);
  if (!probe.condition.ready) logger.warn({ reason: probe.condition.reason, message: probe.condition.message }, 'runtime not ready');
  if (traceSession) await checkTraceSession(traceSession, probe.features, logger);
  const metrics = new DaemonMetrics();
  const reaper = await Reaper.start(logger);
  // Short tools (CNI plugins, netns tools, runsc state/wait/kill/delete...) fork from the reaper, not from the daemon's large address space.
  const launcher = reaper ? await ReaperLauncher.open(reaper, join(config.runDir, 'launch')) : undefined;
  const runsc = runscFor(config, probe.features, metrics.observeRunsc, reaper, launcher);
  const network = await NetworkManager.open({
    confDir: config.cniConfDir,
    binDirs: config.cniBinDirs,
    runDir: config.runDir,
    stateDir: config.stateDir,
    pluginTimeoutMs: config.cniPluginTimeout * 1000,
    defaultNetwork: config.defaultNetwork ? { bridge: config.defaultNetworkBridge, subnet: config.defaultNetworkSubnet } : undefined,
    launcher,
    logger: logger.child({ module: 'network' }),
  });
  let images: ImageStore;
  try {
    images = await ImageStore.open({
      stateDir: config.stateDir,
      registries: config.registries,
      maxConcurrentDownloads: config.maxConcurrentDownloads,
      pullProgressTimeoutMs: config.pullProgressTimeout * 1000,
      logger: logger.child({ module: 'image-store' }),
    });
  } catch (err) {
    network.close();
    throw err;
  }
  let rt: PodRuntime;
  try {
    rt = await openPodRuntime({ stateDir: config.stateDir, runDir: config.runDir, runsc, images, network, infra, features: () => probe.features, gvisorFlagAllowlist: config.gvisorFlagAllowlist, cgroups, onRecoveryProblem: metrics.countRecoveryProblem, logger: logger.child({ module: 'runtime' }) });
  } catch (err) {
    network.close();
    throw err;
  }
  metrics.watch(rt);
  let audit: AuditLog;
  let metricsServer: MetricsServer | undefined;
  try {
    audit = await AuditLog.open(config.auditLog, logger.child({ module: 'audit' }), { onWriteFailure: metrics.countAuditWriteFailure });
    if (config.metricsPort > 0) metricsServer = await startMetricsServer(metrics, config.metricsAddress, config.metricsPort, logger.child({ module: 'metrics' }));
  } catch (err) {
    await rt.close();
    network.close();
    throw err;
  }
  let streams: StreamServer;
  try {
    streams = await StreamServer.start({
      address: config.streamAddress,
      port: config.streamPort,
      tlsCert: config.streamTlsCert || undefined,
      tlsKey: config.streamTlsKey || undefined,
      backend: new RuntimeStreamBackend({ rt, runsc, busybox: infra.busybox, logger: logger.child({ module: 'stream' }) }),
      logger: logger.child({ module: 'stream' }),
      maxSessions: config.maxStreamSessions,
    });
  } catch (err) {
    await metricsServer?.close();
    await rt.close();
    network.close();
    await audit.close();
    throw err;
  }
  let podCidr = '';
  const info: RuntimeInfo = {
    version: criRuntimeVersion(await versionInfo(config.runsc)),
    handlers: RUNTIME_HANDLERS,
    async runtimeCondition() {
      // Re-probe only while not ready, so installing runsc later heals the node without a restart.
      if (!probe.condition.ready) probe = await probeRuntime(config, infra, cgroups, logger);
      return probe.condition;
    },
    networkCondition: () => network.status(),
    async verboseInfo() {
      return {
        runsc: { path: config.runsc, version: probe.features?.version ?? '', platform: config.runscPlatform, features: probe.features ?? null },
        podCidr,
        config: configToToml(config),
      };
    },
    setPodCidr(cidr) {
      podCidr = cidr;
      logger.info({ podCidr: cidr }, 'kubelet set the pod CIDR');
    },
  };
  return {
    config,
    logger,
    info,
    images,
    network,
    rt,
    runsc,
    infra,
    get features() {
      return probe.features;
    },
    streams,
    streamUrl: streams.url,
    metrics,
    metricsServer,
    audit,
    async close() {
      // Sessions first: they still use the runtime.
      await streams.close();
      await metricsServer?.close();
      await rt.close();
      network.close();
      await audit.close();
      reaper?.close();
    },
  };
}
