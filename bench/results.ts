/** What a bench run records: samples and failures per contender and step, memory figures, and the summaries. */
import type { ContenderName } from './contender.js';
import type { MemoryFigure } from './procs.js';

export interface StepRecord {
  /** Latencies in ms, in the order measured. */
  samples: number[];
  /** One message per failed attempt (never dropped). */
  failures: string[];
  /** Attempts not made because an earlier step of the same iteration failed. */
  skipped: number;
}

export interface MemoryRecord {
  /** The contender's own processes right after start (no pods). */
  idle?: MemoryFigure;
  /** With `pods` pods running, each with one container. */
  loaded?: { pods: number; daemon?: MemoryFigure; sandboxes: MemoryFigure };
}

/** How gvisor-cri compares with another contender on one step; targets are printed, never asserted. */
export interface Target {
  against: ContenderName;
  /** gvisor-cri's p50 must be at most this times the other's. */
  maxRatio: number;
}

export interface StepDef {
  key: string;
  targets: Target[];
}

export const STEP = {
  runPod: 'RunPodSandbox',
  startCtr: 'CreateContainer+StartContainer',
  exec: 'ExecSync(true)',
  stopCtr: 'StopContainer+RemoveContainer',
  stopPod: 'StopPodSandbox+RemovePodSandbox',
  concurrent: (n: number): string => `start ${n} pods concurrently (wall)`,
  relist: (n: number): string => `relist with ${n} pods`,
  pull: (mib: number): string => `PullImage ${mib} MiB, cold`,
  pullFiles: (n: number): string => `PullImage ${n} small files, cold`,
  // The cases with their own floor (recorded under raw): each name says what the floor is.
  pullFloor: (mib: number): string => `pull ${mib} MiB cold (floor: curl + gunzip + tar -x per layer)`,
  netSetup: 'pod network setup: netns + CNI ADD (floor: by hand)',
  netTeardown: 'pod network teardown: CNI DEL + netns (floor: by hand)',
  execSame: 'ExecSync(true), long-lived pod (floor: runsc exec, same sandbox)',
  execSpdy: 'exec true over SPDY: Exec RPC + upgrade + status (floor: runsc exec, same sandbox)',
  portForward: (mib: number): string => `port-forward download ${mib} MiB (floor: HTTP straight to the pod IP)`,
} as const;

const VS_CONTAINERD: Target = { against: 'containerd', maxRatio: 0.8 };

/** The least gvisor-cri's p50 throughput of a transfer step should reach (issue 16: port-forward at network speed). */
export const MIN_THROUGHPUT_MBS = 100;

export function targetsFor(step: string): Target[] {
  // Issue 16: the daemon must not cost more than runsc driven by hand; it may overlap what raw does in sequence.
  if (step === STEP.runPod || step === STEP.startCtr) return [{ against: 'raw', maxRatio: 1.0 }, VS_CONTAINERD];
  if (step === STEP.exec) return [{ against: 'raw', maxRatio: 1.2 }, VS_CONTAINERD];
  if (step.startsWith('pull ')) return [{ against: 'raw', maxRatio: 1.2 }];
  if (step === STEP.netSetup || step === STEP.netTeardown) return [{ against: 'raw', maxRatio: 1.1 }];
  if (step === STEP.execSame || step === STEP.execSpdy) return [{ against: 'raw', maxRatio: 1.2 }, VS_CONTAINERD];
  return [VS_CONTAINERD];
}

export class Recorder {
  readonly steps = new Map<ContenderName, Map<string, StepRecord>>();
  readonly memory = new Map<ContenderName, MemoryRecord>();
  /** Step names in first-seen order, for stable tables. */
  readonly order: string[] = [];
  readonly notes: string[] = [];
  /** Bytes moved per sample, for steps that are transfers (throughput is reported for them). */
  readonly bytes = new Map<string, number>();

  private rec(c: ContenderName, step: string): StepRecord {
    if (!this.order.includes(step)) this.order.push(step);
    let m = this.steps.get(c);
    if (!m) this.steps.set(c, (m = new Map()));
    let r = m.get(step);
    if (!r) m.set(step, (r = { samples: [], failures: [], skipped: 0 }));
    return r;
  }

  /** Fixes a step's place in the tables before anything is recorded for it (warm-ups record only failures). */
  declare(...steps: string[]): void {
    for (const s of steps) if (!this.order.includes(s)) this.order.push(s);
  }

  sample(c: ContenderName, step: string, ms: number): void {
    this.rec(c, step).samples.push(ms);
  }

  failure(c: ContenderName, step: string, err: unknown): void {
    const msg = err instanceof Error ? err.message : String(err);
    this.rec(c, step).failures.push(msg.replace(/\s+/g, ' ').slice(0, 400));
  }

  skipped(c: ContenderName, step: string, n = 1): void {
    this.rec(c, step).skipped += n;
  }

  mem(c: ContenderName): MemoryRecord {
    let m = this.memory.get(c);
    if (!m) this.memory.set(c, (m = {}));
    return m;
  }

  get(c: ContenderName, step: string): StepRecord | undefined {
    return this.steps.get(c)?.get(step);
  }
}

/** Nearest-rank percentile of unsorted samples; undefined for none. */
export function percentile(samples: readonly number[], p: number): number | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}
