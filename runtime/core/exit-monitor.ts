/**
 * Learns container exits: one wait per running container, asked of its
 * sandbox (SandboxDriver.waitContainer), whose answer becomes the record's
 * exit. Also where a stop that killed a container settles its exit when the
 * waiter does not answer in time.
 *
 * Exits are recorded outside the container's RPC lock: StopContainer holds
 * that lock while it waits here for the exit, so taking it would stall
 * every stop. The record file stays whole regardless, since every write of
 * a record runs under the record's own lock (records/store.ts).
 */
import type { Logger } from '../../cri-api/logger.js';
import type { OomCounters } from '../cgroups/index.js';
import type { ContainerIoTable } from '../logs/container-io.js';
import { nowNs, type ContainerRecord, type RecordStore } from '../records/store.js';
import type { SandboxDriver } from '../runsc/sandbox-driver.js';

/** Exit code reported when the real one was lost (containerd's choice too). */
export const UNKNOWN_EXIT_CODE = 255;
/** 128 + SIGKILL: what a container killed with its pod reports. */
export const KILLED_EXIT_CODE = 137;
/** Reason kubelet expects for a container the OOM killer ended. */
export const OOM_REASON = 'OOMKilled';
/** How long to wait for the exit waiter after a stop before recording the exit ourselves. */
const EXIT_RECORD_WAIT_MS = 10_000;

interface Waiter {
  container: ContainerRecord;
  controller: AbortController;
  done: Promise<void>;
}

export interface ExitMonitorOptions {
  driver: SandboxDriver;
  containers: RecordStore<ContainerRecord>;
  io: ContainerIoTable;
  /** Publishes CONTAINER_STOPPED_EVENT for the container. */
  stopped: (c: ContainerRecord) => void;
  /** The OOM counters of the container's sandbox cgroup; undefined when it has none. */
  oomCounters: (c: ContainerRecord) => Promise<OomCounters | undefined>;
  logger: Logger;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ExitMonitor {
  private readonly waiters = new Map<string, Waiter>();
  /** Pods being stopped: their containers' lost exits are kills, not unknowns. */
  private readonly stoppingPods = new Set<string>();
  private closed = false;

  constructor(private readonly opts: ExitMonitorOptions) {}

  /** Starts the container's waiter (once); its answer is recorded as the exit. */
  watch(c: ContainerRecord): void {
    if (this.waiters.has(c.id) || this.closed) return;
    const controller = new AbortController();
    const done = (async (): Promise<void> => {
      let code: number;
      let message = '';
      const before = await this.oomCounters(c);
      try {
        code = await this.opts.driver.waitContainer(c.id, c.sandboxId, controller.signal);
      } catch (err) {
        if (controller.signal.aborted) return;
        code = this.stoppingPods.has(c.sandboxId) ? KILLED_EXIT_CODE : UNKNOWN_EXIT_CODE;
        message = code === UNKNOWN_EXIT_CODE ? `exit status lost: ${(err as Error).message}` : '';
      }
      if (c.phase !== 'running' || !this.opts.containers.get(c.id)) return;
      if (await this.diedOfOom(c, before)) {
        await this.record(c, KILLED_EXIT_CODE, OOM_REASON, 'the pod sandbox\'s cgroup ran out of memory');
        return;
      }
      await this.record(c, code, code === UNKNOWN_EXIT_CODE ? 'Unknown' : undefined, message);
    })().catch((err: unknown) => this.opts.logger.error({ err, container: c.id }, 'recording a container exit failed'));
    this.waiters.set(c.id, { container: c, controller, done });
    void done.finally(() => {
      if (this.waiters.get(c.id)?.done === done) this.waiters.delete(c.id);
    });
  }

  private async oomCounters(c: ContainerRecord): Promise<OomCounters | undefined> {
    return this.opts.oomCounters(c).catch((err: unknown) => {
      this.opts.logger.warn({ err, container: c.id }, 'reading the sandbox cgroup\'s OOM counters failed');
      return undefined;
    });
  }

  /**
   * Whether the container ended for want of memory: the host OOM killer
   * fired in its sandbox cgroup since the container started. It kills the
   * sentry (the cgroup's largest process), so every container of the pod
   * ends with its status lost. A SIGKILL plus a grown limit-hit count is
   * not taken as an OOM: a StopContainer kill of a pod near its limit
   * looks the same.
   */
  private async diedOfOom(c: ContainerRecord, before: OomCounters | undefined): Promise<boolean> {
    if (!before) return false;
    const after = await this.oomCounters(c);
    return after !== undefined && after.oomKills > before.oomKills;
  }

  /** Stops waiting for the container (it is being removed). */
  forget(id: string): void {
    this.waiters.get(id)?.controller.abort();
  }

  /** Resolves when the container's waiter has recorded its exit, or after `ms`. */
  async awaitRecord(id: string, ms: number): Promise<void> {
    const w = this.waiters.get(id);
    if (w) await Promise.race([w.done, sleep(ms)]);
  }

  /**
   * Waits up to `ms` for the container's waiter to record its exit, so a stop
   * needs no wait of its own: true once recorded, false at `ms`,
   * undefined when no waiter runs or it ended without recording (the caller
   * asks runsc then). Rejects with the reason of `signal` if that aborts.
   */
  async waitExit(id: string, ms: number, signal?: AbortSignal): Promise<boolean | undefined> {
    signal?.throwIfAborted();
    const w = this.waiters.get(id);
    if (!w) return undefined;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const outcome = await Promise.race([
        w.done.then(() => 'done' as const),
        new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms))),
        new Promise<'aborted'>((r) => {
          onAbort = (): void => r('aborted');
          signal?.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
      if (outcome === 'aborted') signal?.throwIfAborted();
      if (outcome === 'timeout') return false;
      return w.container.phase === 'running' ? undefined : true;
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Runs `fn` (which kills the pod's containers) with their lost exits counted as kills. */
  async duringPodStop<T>(podId: string, fn: () => Promise<T>): Promise<T> {
    this.stoppingPods.add(podId);
    try {
      return await fn();
    } finally {
      this.stoppingPods.delete(podId);
    }
  }

  /**
   * After a kill: waits for the waiter to record the exit; if it does not
   * come, records `fallbackCode` so the state never stays "running" for a
   * container that is gone.
   */
  async settle(c: ContainerRecord, fallbackCode: number): Promise<void> {
    await this.awaitRecord(c.id, EXIT_RECORD_WAIT_MS);
    if (c.phase === 'running') {
      this.forget(c.id);
      await this.record(c, fallbackCode, 'Error', 'exit status not received from runsc');
    } else if (c.phase === 'created') {
      // Never started (runsc never had it): nothing will read its FIFOs.
      await this.opts.io.close(c.id, false);
    }
  }

  /** Marks the container exited, persists, then finishes its log. */
  async record(c: ContainerRecord, exitCode: number, reason?: string, message = ''): Promise<void> {
    c.phase = 'exited';
    c.exitCode = exitCode;
    c.finishedAtNs = nowNs();
    // containerd's reasons; OOMKilled comes from the cgroup's counters (diedOfOom).
    c.reason = reason ?? (exitCode === 0 ? 'Completed' : 'Error');
    c.message = message;
    if (this.opts.containers.get(c.id)) await this.opts.containers.put(c);
    this.opts.logger.info({ container: c.id, name: c.name, exitCode, reason: c.reason }, 'container exited');
    this.opts.stopped(c);
    await this.opts.io.close(c.id, true);
  }

  /** Stops every waiter (daemon shutdown); containers keep running. */
  async close(): Promise<void> {
    this.closed = true;
    const waiters = [...this.waiters.values()];
    for (const w of waiters) w.controller.abort();
    await Promise.allSettled(waiters.map((w) => w.done));
  }
}
