/**
 * `npm run bench`: gvisor-cri against raw runsc (the floor) and containerd +
 * gVisor (the peer), in one interleaved run. Never part of the test suite.
 * Usage: npm run bench -- [--quick] [--runs N] [--cases a,b] [--contenders x,y] [--relist-pods N] [--max-minutes M]
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainerdBackend, ensureContainerdInstalled } from './backend-containerd.js';
import { GvisorCriBackend } from './backend-gvisor-cri.js';
import { concurrentCase, lifecycleCase, pullCase, relistCase, type CaseOptions } from './cases.js';
import { networkCase, pullFloorCase, streamCase } from './cases-floor.js';
import { sweepLeftovers, sweepRun } from './cleanup.js';
import { ALL_CASES, ALL_CONTENDERS, type CaseName, type Contender, type ContenderName, type ShownContender } from './contender.js';
import { CriContender } from './contender-cri.js';
import { RawContender } from './contender-raw.js';
import { makeBenchEnv, SMALL_FILES, type BenchEnv } from './env.js';
import { jsonDocument, machineLine, markdown, type Machine, type RunInfo } from './report.js';
import { Recorder } from './results.js';
import { renderSvg } from './svg.js';
import { isSandboxProcess, processTable } from './procs.js';
import { unameRelease, versionOf } from './tools.js';

export interface BenchOptions {
  runs: number;
  concurrentRuns: number;
  warmup: number;
  cases: CaseName[];
  contenders: ContenderName[];
  concurrentSizes: number[];
  relistPods: number;
  memoryPods: number;
  bigLayers: number;
  layerMiB: number;
  maxMinutes: number;
}

const USAGE = 'usage: npm run bench -- [--quick] [--runs N] [--concurrent-runs N] [--cases lifecycle,concurrent,relist,pull,pull-floor,network,stream] [--contenders raw,raw-naive,gvisor-cri,containerd,containerd-runc] [--relist-pods N] [--max-minutes M]';

function list<T extends string>(value: string, allowed: readonly T[], what: string): T[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!allowed.includes(i as T)) throw new Error(`unknown ${what} "${i}"; known: ${allowed.join(', ')}`);
  return items as T[];
}

function positive(value: string | undefined, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a positive integer, got "${value}"`);
  return n;
}

export function parseArgs(argv: readonly string[]): BenchOptions {
  const quick = argv.includes('--quick');
  const o: BenchOptions = {
    runs: quick ? 3 : 20,
    concurrentRuns: 0,
    warmup: 1,
    cases: [...ALL_CASES],
    contenders: [...ALL_CONTENDERS],
    concurrentSizes: quick ? [3, 5] : [10, 20],
    relistPods: quick ? 5 : 50,
    memoryPods: quick ? 5 : 20,
    bigLayers: 4,
    layerMiB: 10,
    maxMinutes: quick ? 20 : 150,
  };
  let concurrentRuns: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => argv[++i] ?? '';
    if (a === '--quick') continue;
    else if (a === '--runs') o.runs = positive(next(), a);
    else if (a === '--concurrent-runs') concurrentRuns = positive(next(), a);
    else if (a === '--cases') o.cases = list(next(), ALL_CASES, 'case');
    else if (a === '--contenders') o.contenders = list(next(), ALL_CONTENDERS, 'contender');
    else if (a === '--relist-pods') o.relistPods = positive(next(), a);
    else if (a === '--max-minutes') o.maxMinutes = positive(next(), a);
    else if (a === '--help' || a === '-h') throw new Error(USAGE);
    else throw new Error(`unknown argument "${a}"\n${USAGE}`);
  }
  // A burst of 20 sandboxes costs tens of seconds on 2 cores: fewer iterations, said in the output.
  o.concurrentRuns = concurrentRuns ?? Math.min(o.runs, 5);
  o.memoryPods = Math.min(o.memoryPods, o.relistPods);
  return o;
}

/** Other work on the machine (e.g. test suites) adds noise to every contender alike; it is said, not hidden. */
async function loadNote(when: string): Promise<string> {
  const foreign = (await processTable()).filter((p) => isSandboxProcess(p) && p.argv[0] === 'runsc-sandbox' && !p.argv.some((a) => a.includes(`/gvbench-${process.pid}/`)));
  return `${when}: load average ${loadavg().map((l) => l.toFixed(2)).join(' / ')} (1/5/15 min), ${foreign.length} gVisor sandboxes of other users running`;
}

async function machine(): Promise<Machine> {
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: await unameRelease(),
    runsc: (await versionOf('/usr/bin/runsc', ['--version'])) ?? 'runsc missing',
    containerd: (await versionOf('/usr/bin/containerd', ['--version']))?.split(' ')[2] ?? 'not installed',
    runc: (await versionOf('/usr/sbin/runc', ['--version']))?.replace(/^runc version /, '') ?? 'not installed',
    node: process.version,
  };
}

function buildContenders(env: BenchEnv, names: readonly ContenderName[], runcAvailable: boolean, rec: Recorder): Contender[] {
  const out: Contender[] = [];
  let ctrd: ContainerdBackend | undefined;
  const containerd = (): ContainerdBackend => (ctrd ??= new ContainerdBackend(env, 3));
  for (const n of names) {
    if (n === 'raw' || n === 'raw-naive') out.push(new RawContender(n, env, n === 'raw' ? 0 : 1));
    else if (n === 'gvisor-cri') out.push(new CriContender(n, 'gvisor-cri over its CRI socket', false, new Set<CaseName>(['lifecycle', 'concurrent', 'relist', 'pull', 'pull-floor', 'network', 'stream']), new GvisorCriBackend(env, 2), '', env.images));
    else if (n === 'containerd') out.push(new CriContender(n, 'containerd 1.6 CRI + runc.v2 shim + runsc adapter', false, new Set<CaseName>(['lifecycle', 'concurrent', 'relist', 'pull', 'stream']), containerd(), 'runsc', env.images));
    else if (runcAvailable) out.push(new CriContender(n, 'containerd + runc, unsandboxed', true, new Set<CaseName>(['lifecycle', 'concurrent']), containerd(), 'runc', env.images));
    else rec.notes.push('containerd-runc left out: runc could not be installed from Debian');
  }
  return out;
}

export async function main(argv: readonly string[]): Promise<number> {
  let opts: BenchOptions;
  try {
    opts = parseArgs(argv);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error('bench: needs root (network namespaces, runsc, containerd)');
    return 1;
  }
  const log = (line: string): void => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  const startedAt = new Date();
  const rec = new Recorder();
  let interrupted = false;
  let env: BenchEnv | undefined;
  let contenders: Contender[] = [];
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) {
      // Second Ctrl-C: no more orderly teardown, just the sweep.
      log(`${sig} again: sweeping and exiting`);
      void sweepRun(process.pid, log).finally(() => process.exit(130));
      return;
    }
    interrupted = true;
    log(`${sig}: finishing the current iteration, then cleaning up (again to force)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await sweepLeftovers(log);
    const wantsContainerd = opts.contenders.some((c) => c.startsWith('containerd'));
    let runcAvailable = false;
    if (wantsContainerd) {
      log('checking containerd / runc (apt-get install if missing)');
      runcAvailable = (await ensureContainerdInstalled(opts.contenders.includes('containerd-runc'))).runc;
    }
    const m = await machine();
    console.log(machineLine(m));
    rec.notes.push(await loadNote('machine load at start'));
    log(rec.notes[rec.notes.length - 1]);
    log('starting the local registry and pushing the bench images');
    env = await makeBenchEnv(process.pid, opts.bigLayers, opts.layerMiB, opts.cases.includes('stream'));
    const benchEnv = env;
    const all = buildContenders(env, opts.contenders, runcAvailable, rec);
    for (const c of all) {
      if (interrupted) break;
      log(`starting ${c.name}`);
      try {
        await c.start();
        contenders.push(c);
        const idle = await c.daemonMemory();
        if (idle) rec.mem(c.name).idle = idle;
      } catch (err) {
        const msg = `${c.name} could not start: ${(err as Error).message}`;
        log(msg);
        rec.notes.push(msg);
        await c.stop();
      }
    }
    const caseOpts: CaseOptions = {
      runs: opts.runs,
      concurrentRuns: opts.concurrentRuns,
      warmup: opts.warmup,
      concurrentSizes: opts.concurrentSizes,
      relistPods: opts.relistPods,
      memoryPods: opts.memoryPods,
      bigImageMiB: opts.bigLayers * opts.layerMiB,
      deadline: startedAt.getTime() + opts.maxMinutes * 60_000,
      aborted: () => interrupted,
      log,
    };
    const cases: Record<CaseName, () => Promise<void>> = {
      lifecycle: () => lifecycleCase(rec, contenders, caseOpts),
      concurrent: () => concurrentCase(rec, contenders, caseOpts),
      relist: () => relistCase(rec, contenders, caseOpts),
      pull: () => pullCase(rec, contenders, caseOpts, benchEnv),
      'pull-floor': () => pullFloorCase(rec, contenders, caseOpts, benchEnv),
      network: () => networkCase(rec, contenders, caseOpts, benchEnv),
      stream: () => streamCase(rec, contenders, caseOpts, benchEnv),
    };
    for (const name of opts.cases) {
      if (interrupted) break;
      log(`case ${name}`);
      await cases[name]();
    }
    rec.notes.push(await loadNote('machine load at end'));
    const info: RunInfo = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      argv: [...argv],
      runs: opts.runs,
      concurrentRuns: opts.concurrentRuns,
      warmup: opts.warmup,
      relistPods: opts.relistPods,
      concurrentSizes: opts.concurrentSizes,
      bigImageMiB: opts.bigLayers * opts.layerMiB,
      smallFiles: SMALL_FILES,
    };
    const shown: ShownContender[] = all.filter((c) => rec.steps.has(c.name) || rec.memory.has(c.name));
    // The floors of pull-floor, network and stream are made by those cases, with or without the raw contender.
    if (rec.steps.has('raw') && !shown.some((c) => c.name === 'raw')) shown.unshift({ name: 'raw', label: 'the cases\' own floors', reference: false });
    const md = markdown(rec, shown, m, info);
    const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
    await mkdir(dir, { recursive: true });
    const stamp = info.startedAt.replace(/[:.]/g, '-');
    await writeFile(join(dir, `${stamp}.json`), JSON.stringify(jsonDocument(rec, shown, m, info), null, 2) + '\n');
    await writeFile(join(dir, `${stamp}.md`), md);
    await writeFile(join(dir, `${stamp}.svg`), renderSvg(rec, shown, `gvisor-cri bench ${info.startedAt}`, machineLine(m)));
    console.log('\n' + md);
    log(`results: ${join(dir, stamp)}.{json,md,svg}`);
    return interrupted ? 130 : 0;
  } catch (err) {
    log(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    return 1;
  } finally {
    log('cleaning up');
    for (const c of contenders) await c.stop();
    await env?.registry.stop().catch(() => undefined);
    await sweepRun(process.pid, log).catch((err: unknown) => log(`cleanup sweep failed: ${(err as Error).message}`));
    contenders = [];
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
