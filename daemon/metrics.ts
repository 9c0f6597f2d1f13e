/**
 * The daemon's Prometheus metrics (prom-client) and their HTTP endpoint:
 * CRI calls by method and gRPC code, pods and containers by state (read
 * from PodRuntime at scrape time), image pulls, runsc calls by
 * subcommand and outcome, audit records lost to failed writes, and what
 * start-up recovery went on past.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CriError, GrpcStatus } from '../cri-api/errors.js';
import type { Logger } from '../cri-api/logger.js';
import type { PodRuntime, RecoveryProblem } from '../runtime/index.js';

const CODE_NAMES = new Map<number, string>(Object.entries(GrpcStatus).map(([name, code]) => [code, name]));

/** `NOT_FOUND` for 5: the code names Prometheus users know from grpc-go. */
export function grpcCodeName(err: unknown): string {
  const code = err instanceof CriError ? err.code : GrpcStatus.INTERNAL;
  return CODE_NAMES.get(code) ?? String(code);
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly rpcTotal: Counter<'method' | 'code'>;
  private readonly rpcSeconds: Histogram<'method' | 'code'>;
  private readonly pullBytes: Counter;
  private readonly pullSeconds: Histogram<'outcome'>;
  private readonly runscSeconds: Histogram<'subcommand' | 'outcome'>;
  private readonly auditWriteFailures: Counter;
  private readonly recoveryProblems: Counter<'kind' | 'problem'>;
  private runtime: PodRuntime | undefined;

  constructor() {
    const registers = [this.registry];
    this.rpcTotal = new Counter({ name: 'gvisor_cri_rpc_total', help: 'CRI calls answered, by method and gRPC status code.', labelNames: ['method', 'code'], registers });
    this.rpcSeconds = new Histogram({
      name: 'gvisor_cri_rpc_duration_seconds',
      help: 'Time to answer a unary CRI call (for server-streaming calls: how long the stream lasted), by method and gRPC status code.',
      labelNames: ['method', 'code'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.pullBytes = new Counter({ name: 'gvisor_cri_image_pull_bytes_total', help: 'Bytes of images pulled (config and compressed layers of each pulled image).', registers });
    this.pullSeconds = new Histogram({
      name: 'gvisor_cri_image_pull_duration_seconds',
      help: 'Time a PullImage call took, by outcome (ok or the gRPC code).',
      labelNames: ['outcome'],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.runscSeconds = new Histogram({
      name: 'gvisor_cri_runsc_duration_seconds',
      help: 'Time a runsc command took, by subcommand and outcome (ok or error). `runsc wait` lasts as long as its container and is not counted.',
      labelNames: ['subcommand', 'outcome'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.auditWriteFailures = new Counter({
      name: 'gvisor_cri_audit_write_failures_total',
      help: 'Audit records lost because writing or syncing the audit log failed (disk full, file system error); alert on any increase.',
      registers,
    });
    this.recoveryProblems = new Counter({
      name: 'gvisor_cri_recovery_problems_total',
      help: 'What start-up recovery went on past, by kind of object (pod, container, runsc, image, network) and problem: unreadable_record (the record file was moved aside as <file>.corrupt-<time>) or failed_step (a rebuild or cleanup step failed; see the log).',
      labelNames: ['kind', 'problem'],
      registers,
    });
    const self = this;
    new Gauge({
      name: 'gvisor_cri_pods',
      help: 'Pod sandboxes known to the runtime, by state.',
      labelNames: ['state'],
      registers,
      collect() {
        const pods = self.runtime?.listSandboxes() ?? [];
        for (const state of ['ready', 'notready'] as const) this.set({ state }, pods.filter((p) => p.phase === state).length);
      },
    });
    new Gauge({
      name: 'gvisor_cri_containers',
      help: 'Containers known to the runtime, by state.',
      labelNames: ['state'],
      registers,
      collect() {
        const ctrs = self.runtime?.listContainers() ?? [];
        for (const state of ['created', 'running', 'exited'] as const) this.set({ state }, ctrs.filter((c) => c.phase === state).length);
      },
    });
    // The event-loop lag monitor ticks at this period (prom-client's default, 10 ms, wakes an idle daemon 100 times a second).
    collectDefaultMetrics({ register: this.registry, prefix: 'gvisor_cri_', eventLoopMonitoringPrecision: 100 });
  }

  /** The runtime whose pods and containers the state gauges count. */
  watch(rt: PodRuntime): void {
    this.runtime = rt;
  }

  observeRpc(method: string, code: string, seconds: number): void {
    this.rpcTotal.inc({ method, code });
    this.rpcSeconds.observe({ method, code }, seconds);
  }

  observePull(bytes: number, seconds: number, outcome: string): void {
    if (outcome === 'ok') this.pullBytes.inc(bytes);
    this.pullSeconds.observe({ outcome }, seconds);
  }

  /** Fits RunscOptions.onCommand. */
  readonly observeRunsc = (subcommand: string, ms: number, ok: boolean): void => {
    if (subcommand === 'wait') return;
    this.runscSeconds.observe({ subcommand, outcome: ok ? 'ok' : 'error' }, ms / 1000);
  };

  /** Fits AuditLogOptions.onWriteFailure. */
  readonly countAuditWriteFailure = (records: number): void => {
    this.auditWriteFailures.inc(records);
  };

  /** Fits PodRuntimeOptions.onRecoveryProblem. */
  readonly countRecoveryProblem = (p: RecoveryProblem): void => {
    this.recoveryProblems.inc({ kind: p.kind, problem: p.problem });
  };

  /** The Prometheus text exposition. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

export interface MetricsServer {
  /** The bound port (useful with port 0 in tests). */
  port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics on address:port; anything else is 404. */
export async function startMetricsServer(metrics: DaemonMetrics, address: string, port: number, logger: Logger): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.contentType }).end(body),
      (err: unknown) => {
        logger.error({ err }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`metrics server: listen on ${address}:${port}: ${err.message}`)));
    server.listen(port, address, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  logger.info({ address, port: bound }, 'metrics served at /metrics');
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type AnyHandler = (...args: never[]) => Promise<unknown>;

/**
 * Wraps every handler to count it and time it by gRPC code; PullImage also
 * feeds the pull metrics (`imageSize` turns its image_ref into bytes).
 */
export function instrumentHandlers<H extends object>(handlers: H, metrics: DaemonMetrics, imageSize: (imageRef: string) => number | undefined): H {
  const out: Record<string, AnyHandler> = {};
  for (const [rpc, h] of Object.entries(handlers as Record<string, AnyHandler>)) {
    out[rpc] = async (...args: never[]): Promise<unknown> => {
      const started = performance.now();
      let code = 'OK';
      try {
        const res = await h(...args);
        if (rpc === 'PullImage') {
          const ref = (res as { image_ref?: string } | undefined)?.image_ref ?? '';
          metrics.observePull(imageSize(ref) ?? 0, (performance.now() - started) / 1000, 'ok');
        }
        return res;
      } catch (err) {
        code = grpcCodeName(err);
        if (rpc === 'PullImage') metrics.observePull(0, (performance.now() - started) / 1000, code);
        throw err;
      } finally {
        metrics.observeRpc(rpc, code, (performance.now() - started) / 1000);
      }
    };
  }
  return out as H;
}
