/** Turns a Recorder into the printed / Markdown tables and the JSON document. */
import type { ContenderName, ShownContender } from './contender.js';
import type { MemoryFigure } from './procs.js';
import { MIN_THROUGHPUT_MBS, percentile, targetsFor, type Recorder } from './results.js';

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  runsc: string;
  containerd: string;
  runc: string;
  node: string;
}

export interface RunInfo {
  startedAt: string;
  finishedAt: string;
  argv: string[];
  runs: number;
  concurrentRuns: number;
  warmup: number;
  relistPods: number;
  concurrentSizes: number[];
  bigImageMiB: number;
  smallFiles: number;
}

export const machineLine = (m: Machine): string =>
  `machine: ${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, kernel ${m.kernel}, ${m.runsc}, containerd ${m.containerd}, runc ${m.runc}, node ${m.node}`;

const fmtMs = (v: number | undefined): string => (v === undefined ? '—' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`);
const fmtMiB = (f: MemoryFigure | undefined): string => (f ? `${(f.rssBytes / 2 ** 20).toFixed(0)} / ${(f.pssBytes / 2 ** 20).toFixed(0)} MiB (${f.processes} procs)` : '—');

const fmtMBs = (v: number | undefined): string => (v === undefined ? '—' : `${v.toFixed(1)} MB/s`);

/** MB/s at the p50 time of a transfer step (the p50 of the rates, as rate is monotone in time). */
function throughput(rec: Recorder, c: ContenderName, step: string): number | undefined {
  const p50 = percentile(rec.get(c, step)?.samples ?? [], 50);
  const bytes = rec.bytes.get(step);
  return p50 === undefined || bytes === undefined || p50 <= 0 ? undefined : bytes / 1e6 / (p50 / 1000);
}

function ratio(rec: Recorder, step: string, a: ContenderName, b: ContenderName, p: number): number | undefined {
  const x = percentile(rec.get(a, step)?.samples ?? [], p);
  const y = percentile(rec.get(b, step)?.samples ?? [], p);
  return x !== undefined && y !== undefined && y > 0 ? x / y : undefined;
}

function ratioCell(rec: Recorder, step: string, against: ContenderName): string {
  const r50 = ratio(rec, step, 'gvisor-cri', against, 50);
  if (r50 === undefined) return '—';
  const r95 = ratio(rec, step, 'gvisor-cri', against, 95);
  const target = targetsFor(step).find((t) => t.against === against);
  const mark = target ? (r50 <= target.maxRatio ? ` ✓ (≤ ${target.maxRatio.toFixed(2)}×)` : ` ✗ (≤ ${target.maxRatio.toFixed(2)}×)`) : '';
  return `${r50.toFixed(2)}× (p95 ${r95?.toFixed(2) ?? '—'}×)${mark}`;
}

/** Markdown: latency table, ratio table, memory table, failures. */
export function markdown(rec: Recorder, contenders: readonly ShownContender[], machine: Machine, info: RunInfo): string {
  const names = contenders.map((c) => c.name);
  const out: string[] = [];
  out.push(`# gvisor-cri bench ${info.startedAt}`, '', machineLine(machine), '');
  out.push(`runs: ${info.runs} per case (concurrent: ${info.concurrentRuns}), warm-up ${info.warmup}, contender order rotated per iteration; relist with ${info.relistPods} pods; pull images of ${info.bigImageMiB} MiB and of ${info.smallFiles} small files`, '');
  out.push('Contenders: ' + contenders.map((c) => `\`${c.name}\` = ${c.label}${c.reference ? ' — **reference only, not a target**' : ''}`).join('; '), '');
  out.push('## Latency p50 / p95 (n, failures)', '');
  out.push(`| step | ${names.join(' | ')} |`, `| --- | ${names.map(() => '---').join(' | ')} |`);
  for (const step of rec.order) {
    const cells = names.map((n) => {
      const r = rec.get(n, step);
      if (!r) return 'n/a';
      const fail = r.failures.length > 0 ? `, **${r.failures.length} failed**` : '';
      const skip = r.skipped > 0 ? `, ${r.skipped} skipped` : '';
      return `${fmtMs(percentile(r.samples, 50))} / ${fmtMs(percentile(r.samples, 95))} (n=${r.samples.length}${fail}${skip})`;
    });
    out.push(`| ${step} | ${cells.join(' | ')} |`);
  }
  out.push('', '## Ratios of gvisor-cri (p50, with p95) and targets (printed, never asserted)', '');
  out.push('| step | / raw runsc (floor) | / containerd+runsc | / raw naive teardown |', '| --- | --- | --- | --- |');
  for (const step of rec.order) {
    out.push(`| ${step} | ${ratioCell(rec, step, 'raw')} | ${ratioCell(rec, step, 'containerd')} | ${ratioCell(rec, step, 'raw-naive')} |`);
  }
  const transfers = [...rec.bytes.keys()].filter((s) => rec.order.includes(s));
  if (transfers.length > 0) {
    out.push('', '## Throughput p50 (MB/s = 10^6 bytes/s, from the p50 time)', '');
    out.push(`| step | ${names.join(' | ')} |`, `| --- | ${names.map(() => '---').join(' | ')} |`);
    for (const step of transfers) out.push(`| ${step} | ${names.map((n) => fmtMBs(throughput(rec, n, step))).join(' | ')} |`);
    out.push('');
    for (const step of transfers) {
      const mbs = throughput(rec, 'gvisor-cri', step);
      if (mbs !== undefined) out.push(`- gvisor-cri, ${step}: ${fmtMBs(mbs)} ${mbs >= MIN_THROUGHPUT_MBS ? '✓' : '✗'} (≥ ${MIN_THROUGHPUT_MBS} MB/s)`);
    }
  }
  out.push('', '## Memory (RSS / PSS)', '');
  out.push('| contender | daemon idle | daemon with pods | sandboxes with pods |', '| --- | --- | --- | --- |');
  for (const c of contenders) {
    const m = rec.memory.get(c.name);
    if (!m) continue;
    const loaded = m.loaded;
    const daemonIdle = c.name === 'raw' ? '0 (no daemon)' : fmtMiB(m.idle);
    const daemonLoaded = c.name === 'raw' ? '0 (no daemon)' : loaded ? `${fmtMiB(loaded.daemon)} @ ${loaded.pods} pods` : '—';
    out.push(`| ${c.name} | ${daemonIdle} | ${daemonLoaded} | ${loaded ? `${fmtMiB(loaded.sandboxes)} @ ${loaded.pods} pods` : '—'} |`);
  }
  const failures: string[] = [];
  for (const n of names) {
    for (const [step, r] of rec.steps.get(n) ?? []) {
      const counts = new Map<string, number>();
      for (const f of r.failures) counts.set(f, (counts.get(f) ?? 0) + 1);
      for (const [msg, k] of counts) failures.push(`- ${n} / ${step}: ${k}× ${msg}`);
    }
  }
  out.push('', '## Failures', '', ...(failures.length > 0 ? failures : ['none']));
  if (rec.notes.length > 0) out.push('', '## Notes', '', ...rec.notes.map((n) => `- ${n}`));
  return out.join('\n') + '\n';
}

export function jsonDocument(rec: Recorder, contenders: readonly ShownContender[], machine: Machine, info: RunInfo): object {
  const steps: Record<string, Record<string, object>> = {};
  for (const c of contenders) {
    for (const [step, r] of rec.steps.get(c.name) ?? []) {
      steps[step] ??= {};
      steps[step][c.name] = { p50: percentile(r.samples, 50), p95: percentile(r.samples, 95), n: r.samples.length, failures: r.failures, skipped: r.skipped, samples: r.samples };
    }
  }
  const ratios: Record<string, object> = {};
  for (const step of rec.order) {
    ratios[step] = Object.fromEntries(
      (['raw', 'containerd', 'raw-naive'] as const).map((a) => [a, { p50: ratio(rec, step, 'gvisor-cri', a, 50), p95: ratio(rec, step, 'gvisor-cri', a, 95) }]),
    );
  }
  return {
    machine,
    run: info,
    contenders: contenders.map((c) => ({ name: c.name, label: c.label, reference: c.reference })),
    steps,
    ratios,
    targets: Object.fromEntries(rec.order.map((s) => [s, targetsFor(s)])),
    throughputMBs: Object.fromEntries([...rec.bytes.keys()].map((s) => [s, Object.fromEntries(contenders.map((c) => [c.name, throughput(rec, c.name, s)]))])),
    memory: Object.fromEntries(rec.memory),
    notes: rec.notes,
  };
}
