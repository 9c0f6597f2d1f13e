/**
 * The measured cases. Iterations are interleaved across contenders with the
 * order rotated each time, so machine noise hits all alike. Every step has a
 * time bound; every failure is recorded; a failed step skips the rest of
 * that iteration (counted as skipped) and the contender's pods are cleared.
 */
import type { Contender, ContainerRef, ContenderName, PodRef } from './contender.js';
import { SMALL_FILES, type BenchEnv } from './env.js';
import { syncDisks } from './tools.js';
import { buildRelistClient, RelistClient } from './relist-client.js';
import { RPC_TIMEOUT_MS } from './contender-cri.js';
import type { GoBuild } from '../test/helpers/go-cri-client.js';
import { STEP, type Recorder } from './results.js';

export interface CaseOptions {
  runs: number;
  concurrentRuns: number;
  warmup: number;
  concurrentSizes: number[];
  relistPods: number;
  /** Pods running when the loaded memory figure is taken. */
  memoryPods: number;
  bigImageMiB: number;
  /** Stops starting new iterations after this instant (ms since epoch). */
  deadline: number;
  /** True once the user pressed Ctrl-C. */
  aborted: () => boolean;
  log: (line: string) => void;
}

const STEP_LIMIT_MS = 180_000;
/**
 * Unmeasured relists after the fill, at least this many and for at least
 * this long. kubelet relists every second from the start, so by the time a
 * node holds 50 pods every process on the path (the bench's own client
 * too) runs it warm. With a single warm-up relist whichever contender went
 * first also paid for warming the bench's client: 3.9x for gvisor-cri
 * first, 0.68x with containerd first, back to back. And the machine
 * settles for seconds after the fill: in a probe, containerd's first 100
 * relists after it took 20.4 ms at the median, the next 100 12.8, then 11-12.
 */
const RELIST_WARMUP = 60;
const RELIST_WARMUP_MS = 3000;
/**
 * Measured relists per run. A relist takes milliseconds, and with 50 idle
 * sandboxes taking over half the machine (systrap's fast-path controller
 * wakes every 400 us in each) one relist's time swings from one second to
 * the next: blocks of 100 back to back took 7 to 36 ms at the median. With
 * ten a run a pass measured half a second, and a contender's figure was
 * whichever phase of the machine that half second hit (one pass 8.1 ms,
 * the other 14.8 for the same daemon in one run); fifty make it a figure.
 */
const RELISTS_PER_RUN = 50;

class StepTimeout extends Error {}

/** Runs `fn` with a bound; the returned promise settles by the bound even if `fn` hangs. */
export async function bounded<T>(fn: () => Promise<T>, ms = STEP_LIMIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([fn(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new StepTimeout(`timed out after ${ms / 1000} s`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export type Outcome<T> = { ok: true; value: T } | { ok: false };

/** Records a step that its client timed itself (`value.ms`), bounded like timedAs. */
async function selfTimed<T extends { ms: number }>(rec: Recorder, c: Contender, step: string, fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    const value = await bounded(fn);
    rec.sample(c.name, step, value.ms);
    return { ok: true, value };
  } catch (err) {
    rec.failure(c.name, step, err);
    return { ok: false };
  }
}

/** Times one step of contender `c` into `rec` (when `record`). */
function timed<T>(rec: Recorder, c: Contender, step: string, record: boolean, fn: () => Promise<T>): Promise<Outcome<T>> {
  return timedAs(rec, c.name, step, record, fn);
}

/** Times one step into `rec` under `name` (when `record`), bounded by `limitMs`. */
export async function timedAs<T>(rec: Recorder, name: ContenderName, step: string, record: boolean, fn: () => Promise<T>, limitMs = STEP_LIMIT_MS): Promise<Outcome<T>> {
  const t0 = performance.now();
  try {
    const value = await bounded(fn, limitMs);
    if (record) rec.sample(name, step, performance.now() - t0);
    return { ok: true, value };
  } catch (err) {
    // Failures count in warm-up too: a failure is never hidden.
    rec.failure(name, step, record ? err : new Error(`(warm-up) ${(err as Error).message}`));
    return { ok: false };
  }
}

export const rotate = <T>(xs: readonly T[], k: number): T[] => xs.map((_, i) => xs[(i + k) % xs.length]);

export function stop(opts: CaseOptions, what: string, i: number, total: number, rec: Recorder): boolean {
  if (opts.aborted()) {
    rec.notes.push(`${what}: interrupted after ${i} of ${total} iterations`);
    return true;
  }
  if (Date.now() > opts.deadline) {
    rec.notes.push(`${what}: time bound reached after ${i} of ${total} iterations`);
    return true;
  }
  return false;
}

export async function clearPods(c: Contender, log: (l: string) => void): Promise<void> {
  await bounded(() => c.removeAllPods(), 300_000).catch((err: unknown) => log(`${c.name}: clearing pods failed: ${(err as Error).message}`));
}

/** One pod, one container: every lifecycle step in order. */
async function lifecycleOnce(rec: Recorder, c: Contender, i: number, record: boolean, log: (l: string) => void): Promise<void> {
  const steps = [STEP.runPod, STEP.startCtr, STEP.exec, STEP.stopCtr, STEP.stopPod];
  const skipFrom = (k: number): void => {
    if (record) for (const s of steps.slice(k)) rec.skipped(c.name, s);
  };
  const pod = await timed<PodRef>(rec, c, STEP.runPod, record, () => c.runPod(`lc-${i}`));
  if (!pod.ok) return skipFrom(1);
  const ctr = await timed<ContainerRef>(rec, c, STEP.startCtr, record, () => c.startContainer(pod.value));
  if (!ctr.ok) {
    await clearPods(c, log);
    return skipFrom(2);
  }
  const execed = await timed(rec, c, STEP.exec, record, () => c.exec(ctr.value));
  const removed = await timed(rec, c, STEP.stopCtr, record, () => c.stopRemoveContainer(ctr.value));
  // The pod teardown is only comparable with its container gone.
  if (!execed.ok || !removed.ok) {
    await clearPods(c, log);
    return skipFrom(4);
  }
  if (!(await timed(rec, c, STEP.stopPod, record, () => c.stopRemovePod(pod.value))).ok) await clearPods(c, log);
}

export async function lifecycleCase(rec: Recorder, contenders: readonly Contender[], opts: CaseOptions): Promise<void> {
  const cs = contenders.filter((c) => c.cases.has('lifecycle'));
  for (let w = 0; w < opts.warmup; w++) for (const c of cs) await lifecycleOnce(rec, c, -1 - w, false, opts.log);
  for (let i = 0; i < opts.runs; i++) {
    if (stop(opts, 'lifecycle', i, opts.runs, rec)) return;
    for (const c of rotate(cs, i)) await lifecycleOnce(rec, c, i, true, opts.log);
    opts.log(`lifecycle: ${i + 1}/${opts.runs}`);
  }
}

/** Starts `n` pods (pod + container each) at once; wall time and per-pod failures. */
async function burst(rec: Recorder, c: Contender, n: number, iter: number, record: boolean, log: (l: string) => void): Promise<void> {
  const step = STEP.concurrent(n);
  const t0 = performance.now();
  const results = await Promise.allSettled(
    Array.from({ length: n }, (_, k) => bounded(async () => c.startContainer(await c.runPod(`cc-${iter}-${k}`)))),
  );
  const wall = performance.now() - t0;
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (record) {
    rec.sample(c.name, step, wall);
    for (const f of failed) rec.failure(c.name, step, f.reason);
  } else {
    for (const f of failed) rec.failure(c.name, step, new Error(`(warm-up) ${(f.reason as Error).message}`));
  }
  await clearPods(c, log);
}

export async function concurrentCase(rec: Recorder, contenders: readonly Contender[], opts: CaseOptions): Promise<void> {
  const cs = contenders.filter((c) => c.cases.has('concurrent'));
  const small = Math.min(...opts.concurrentSizes);
  for (const c of cs) if (opts.warmup > 0) await burst(rec, c, small, -1, false, opts.log);
  for (let i = 0; i < opts.concurrentRuns; i++) {
    if (stop(opts, 'concurrent', i, opts.concurrentRuns, rec)) return;
    for (const n of opts.concurrentSizes) for (const c of rotate(cs, i)) await burst(rec, c, n, i, true, opts.log);
    opts.log(`concurrent: ${i + 1}/${opts.concurrentRuns}`);
  }
}

/** Brings the contender to `target` pods (pod + container), `parallel` at a time; returns how many failed. */
async function fillPods(c: Contender, have: number, target: number, parallel: number, rec: Recorder, step: string): Promise<number> {
  let failed = 0;
  for (let k = have; k < target; k += parallel) {
    const batch = Array.from({ length: Math.min(parallel, target - k) }, (_, j) => bounded(async () => c.startContainer(await c.runPod(`rl-${k + j}`))));
    for (const r of await Promise.allSettled(batch)) {
      if (r.status === 'rejected') {
        failed++;
        rec.failure(c.name, step, new Error(`starting pods for the case: ${(r.reason as Error).message}`));
      }
    }
  }
  return failed;
}

/**
 * Per contender in turn (holding many pods at once for all contenders would
 * measure the machine, not the runtime): memory with `memoryPods` pods, then
 * kubelet's relist with `relistPods` pods, by a grpc-go client as kubelet's
 * (the grpc-js client the bench drives everything else with spent 300-400 us
 * of CPU a call, more than either runtime answering it). The relists come in
 * two passes in opposite contender order, half the runs each: whoever went
 * second measured faster (with 60 warm-up relists, 57 against 42 ms with
 * gvisor-cri first, 38 against 59 with containerd first), so one order alone
 * measures the order.
 */
export async function relistCase(rec: Recorder, contenders: readonly Contender[], opts: CaseOptions): Promise<void> {
  const cs = contenders.filter((x) => x.cases.has('relist'));
  let client: GoBuild | undefined;
  if (cs.some((c) => c.criSocket)) {
    try {
      client = await buildRelistClient();
    } catch (err) {
      rec.notes.push(`relist not measured: ${(err as Error).message}`);
    }
  }
  const passes = [cs, [...cs].reverse()];
  try {
    for (const [pass, order] of passes.entries()) {
      const runs = pass === 0 ? Math.ceil(opts.runs / 2) : Math.floor(opts.runs / 2);
      for (const c of order) {
        if (stop(opts, `relist/memory (${c.name})`, 0, 1, rec)) return;
        const step = STEP.relist(opts.relistPods);
        try {
          let have = 0;
          if (pass === 0) {
            have = Math.min(opts.memoryPods, opts.relistPods);
            await fillPods(c, 0, have, 4, rec, step);
            await new Promise((r) => setTimeout(r, 2000));
            const daemon = await c.daemonMemory();
            rec.mem(c.name).loaded = { pods: have, daemon, sandboxes: await c.sandboxMemory() };
            opts.log(`memory: ${c.name} measured with ${have} pods`);
          }
          if (!c.criSocket || !client || runs === 0) continue;
          await fillPods(c, have, opts.relistPods, 4, rec, step);
          const relister = new RelistClient(client.binary, c.criSocket, RPC_TIMEOUT_MS);
          try {
            const relist = () => relister.relist();
            const warmUntil = Date.now() + RELIST_WARMUP_MS;
            for (let w = 0; w < RELIST_WARMUP || Date.now() < warmUntil; w++) await bounded(relist).catch(() => undefined);
            for (let i = 0; i < runs * RELISTS_PER_RUN; i++) {
              if (opts.aborted() || Date.now() > opts.deadline) break;
              const r = await selfTimed(rec, c, step, relist);
              const n = r.ok ? r.value.containers : opts.relistPods;
              if (n < opts.relistPods && i === 0) rec.notes.push(`relist (${c.name}, pass ${pass + 1}): only ${n} of ${opts.relistPods} containers were running`);
            }
          } finally {
            relister.close();
          }
          opts.log(`relist: ${c.name} pass ${pass + 1} done`);
        } finally {
          await clearPods(c, opts.log);
        }
      }
    }
  } finally {
    await client?.cleanup();
  }
}

/**
 * Cold pulls of the big image (bytes) and of the small-files image (one
 * file system call after another: most of a real image's unpack time).
 * Each starts after a sync, untimed: otherwise a pull pays for writing out
 * what the pulls before it left dirty (measured: over a run without it,
 * pulls of 2,000 files grew 3-4x slower, for either runtime). Warm-up
 * pulls first, as in the other cases: a runtime's first pull of 40 MiB
 * also pays once for growing its own memory (gvisor-cri's first measured
 * pull was its slowest in each of the last five runs, 2-4.5x its median;
 * a probe counted ~20,000 page faults in the daemon for it, a few thousand
 * for each pull after).
 */
export async function pullCase(rec: Recorder, contenders: readonly Contender[], opts: CaseOptions, env: BenchEnv): Promise<void> {
  const cs = contenders.filter((c) => c.cases.has('pull') && c.pullImage && c.prepareColdPull);
  const pulls = [
    { step: STEP.pull(opts.bigImageMiB), image: env.images.big },
    { step: STEP.pullFiles(SMALL_FILES), image: env.images.files },
  ];
  const coldPull = async (c: Contender, step: string, image: string, record: boolean): Promise<void> => {
    const cold = await bounded(async () => {
      await c.prepareColdPull!(image);
      await syncDisks();
    }).then(() => true, (err: unknown) => {
      rec.failure(c.name, step, new Error(`${record ? '' : '(warm-up) '}RemoveImage and sync before the pull: ${(err as Error).message}`));
      return false;
    });
    if (cold) await timed(rec, c, step, record, () => c.pullImage!(image));
    else if (record) rec.skipped(c.name, step);
  };
  for (let w = 0; w < opts.warmup; w++) for (const { step, image } of pulls) for (const c of cs) await coldPull(c, step, image, false);
  for (let i = 0; i < opts.runs; i++) {
    if (stop(opts, 'pull', i, opts.runs, rec)) return;
    for (const { step, image } of pulls) for (const c of rotate(cs, i)) await coldPull(c, step, image, true);
    opts.log(`pull: ${i + 1}/${opts.runs}`);
  }
}
