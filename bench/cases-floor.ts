/**
 * The cases that measure gvisor-cri against a floor the case makes itself,
 * in the same run, interleaved (order rotated per iteration): pull-floor
 * (curl | gunzip | tar -x per layer), network (CNI plugins by hand), stream (runsc exec
 * in the same sandbox; HTTP straight to the pod IP). Floors are recorded
 * under `raw`; every failure counts, loops are bounded like the other cases.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { silentLogger } from '../cri-api/logger.js';
import { NetworkManager } from '../network/index.js';
import { Runsc, SandboxDriver } from '../runtime/index.js';
import { buildExecProcess } from '../runtime/index.js';
import { exitCodeOf, isUpgrade, parseStatus, spdyExec, spdyForward, spdyUpgrade } from '../test/helpers/stream-client.js';
import { bounded, clearPods, rotate, stop, timedAs, type CaseOptions } from './cases.js';
import type { ContainerRef, Contender, ContenderName, PodRef } from './contender.js';
import { benchConflist, HTTP_FILE, HTTP_FILE_MIB, HTTP_PORT, type BenchEnv } from './env.js';
import { HandCni, type HandPod } from './floor-cni.js';
import { fetchAndUnpack } from './floor-pull.js';
import { STEP, type Recorder } from './results.js';

const CNI_BIN_DIR = '/usr/lib/cni';
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** A 20 MiB download over loopback takes seconds; a hung port-forward must not cost the full step bound per run. */
const DOWNLOAD_LIMIT_MS = 60_000;
/** After this many failures in a row a contender's port-forward is no longer tried (the rest counted as skipped). */
const GIVE_UP_AFTER = 3;

/** One side of a case: the floor (`raw`) or a contender; `once` records its own steps. */
interface Side {
  name: ContenderName;
  once(record: boolean, i: number): Promise<void>;
}

/** Warm-up, then `runs` iterations over the sides, order rotated each time. */
async function interleave(what: string, sides: readonly Side[], rec: Recorder, opts: CaseOptions): Promise<void> {
  for (let w = 0; w < opts.warmup; w++) for (const s of sides) await s.once(false, -1 - w);
  for (let i = 0; i < opts.runs; i++) {
    if (stop(opts, what, i, opts.runs, rec)) return;
    for (const s of rotate(sides, i)) await s.once(true, i);
    opts.log(`${what}: ${i + 1}/${opts.runs}`);
  }
}

/** Untimed preparation of one attempt; a failure is counted on the step, and the attempt skipped. */
async function prepared(rec: Recorder, name: ContenderName, step: string, record: boolean, what: string, fn: () => Promise<unknown>): Promise<boolean> {
  try {
    await bounded(fn);
    return true;
  } catch (err) {
    rec.failure(name, step, new Error(`${record ? '' : '(warm-up) '}${what}: ${(err as Error).message}`));
    if (record) rec.skipped(name, step);
    return false;
  }
}

function gvisorCri(contenders: readonly Contender[], c: string, rec: Recorder): Contender | undefined {
  const g = contenders.find((x) => x.name === 'gvisor-cri');
  if (!g) rec.notes.push(`${c}: left out: the gvisor-cri contender is not running`);
  return g;
}

/** Cold PullImage through gvisor-cri against fetching and unpacking the same blobs by hand. */
export async function pullFloorCase(rec: Recorder, contenders: readonly Contender[], opts: CaseOptions, env: BenchEnv): Promise<void> {
  const g = gvisorCri(contenders, 'pull-floor', rec);
  if (!g?.prepareColdPull || !g.pullImage) return;
  const step = STEP.pullFloor(opts.bigImageMiB);
  const dir = join(env.dir, 'pull-floor');
  rec.declare(step);
  const side = (name: ContenderName, cold: () => Promise<unknown>, pull: () => Promise<void>): Side => ({
    name,
    async once(record) {
      if (await prepared(rec, name, step, record, 'making the pull cold', cold)) await timedAs(rec, name, step, record, pull);
    },
  });
  try {
    await interleave('pull-floor', [
      side('gvisor-cri', () => g.prepareColdPull!(env.images.big), () => g.pullImage!(env.images.big)),
      side('raw', () => rm(dir, { recursive: true, force: true }), () => fetchAndUnpack(env.images.big, dir)),
    ], rec, opts);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** gvisor-cri's NetworkManager against the same conflist run by hand; setup and teardown timed apart. */
export async function networkCase(rec: Recorder, contenders: readonly Contender[], opts: CaseOptions, env: BenchEnv): Promise<void> {
  if (!gvisorCri(contenders, 'network', rec)) return;
  const dir = join(env.dir, 'netcase');
  rec.declare(STEP.netSetup, STEP.netTeardown);
  const confDir = join(dir, 'm', 'cni');
  let nm: NetworkManager | undefined;
  const hand = new HandCni(benchConflist(env.pid, 'h', 5, join(dir, 'h', 'ipam'), true), CNI_BIN_DIR, join(dir, 'h', 'netns'));
  const twoSteps = <P>(name: ContenderName, setup: (id: string, podName: string, uid: string) => Promise<P>, teardown: (p: P) => Promise<void>, undo: (id: string) => Promise<void>): Side => ({
    name,
    async once(record, i) {
      const id = randomBytes(32).toString('hex');
      const up = await timedAs(rec, name, STEP.netSetup, record, () => setup(id, `net-${i < 0 ? 'w' : i}`, randomBytes(8).toString('hex')));
      if (!up.ok) {
        if (record) rec.skipped(name, STEP.netTeardown);
        return;
      }
      const down = await timedAs(rec, name, STEP.netTeardown, record, () => teardown(up.value));
      if (!down.ok) await bounded(() => undo(id)).catch((err: unknown) => opts.log(`network (${name}): undoing a failed teardown failed: ${(err as Error).message}`));
    },
  });
  const handPods = new Map<string, HandPod>();
  try {
    await mkdir(confDir, { recursive: true });
    // Own bridges and subnets (letters m and h, indexes 4 and 5), so neither side shares state with a contender.
    await writeFile(join(confDir, '10-bench.conflist'), benchConflist(env.pid, 'm', 4, join(dir, 'm', 'ipam'), true));
    const m = (nm = await NetworkManager.open({ confDir, binDirs: [CNI_BIN_DIR], runDir: join(dir, 'm', 'run'), stateDir: join(dir, 'm', 'state'), pluginTimeoutMs: 30_000, logger: silentLogger }));
    if (!m.status().ready) throw new Error(`NetworkManager not ready: ${m.status().message}`);
    await interleave('network', [
      twoSteps('gvisor-cri', (podId, name, uid) => m.setup({ podId, name, namespace: 'bench', uid, portMappings: [] }).then(() => podId), (podId) => m.teardown(podId), (podId) => m.teardown(podId)),
      twoSteps('raw', async (id, name, uid) => {
        const pod = await hand.setup(id, name, uid);
        handPods.set(id, pod);
        return pod;
      }, async (pod) => {
        await hand.teardown(pod);
        handPods.delete(pod.id);
      }, async (id) => {
        const pod = handPods.get(id);
        if (pod) await hand.teardown(pod);
        handPods.delete(id);
      }),
    ], rec, opts);
  } catch (err) {
    rec.failure('gvisor-cri', STEP.netSetup, new Error(`preparing the case: ${(err as Error).message}`));
  } finally {
    nm?.close();
  }
}

/** Sends one HTTP/1.0 GET over `stream` and counts the body; resolves once `expect` body bytes arrived. */
function httpGetOver(stream: Duplex, path: string, expect: number, serverError: () => Promise<string>): Promise<void> {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let length = -1;
    let got = 0;
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      stream.removeAllListeners('data');
      if (err) reject(err);
      else resolve();
    };
    stream.on('data', (chunk: Buffer) => {
      if (length < 0) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const text = head.subarray(0, end).toString('latin1');
        const status = /^HTTP\/1\.\d (\d{3})/.exec(text)?.[1];
        length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? NaN);
        if (status !== '200' || !Number.isFinite(length)) return finish(new Error(`GET ${path}: ${text.split('\r\n')[0]} (content-length ${length})`));
        if (length !== expect) return finish(new Error(`GET ${path}: content-length ${length}, expected ${expect}`));
        got = head.length - end - 4;
      } else {
        got += chunk.length;
      }
      if (got >= length) finish();
    });
    const early = (): void => {
      if (done) return;
      const have = length < 0 ? `${head.length} bytes, no complete header` : `${got} of ${length} body bytes`;
      const said = Promise.race([serverError(), new Promise<string>((r) => setTimeout(() => r(''), 1000))]);
      void said.then((text) => finish(new Error(`stream ended after ${have}${text.trim() ? `; server said: ${text.trim().slice(0, 300)}` : ''}`)));
    };
    stream.once('end', early);
    stream.once('close', early);
    stream.once('error', (err: Error) => finish(new Error(`stream failed: ${err.message}`)));
    stream.write(`GET ${path} HTTP/1.0\r\nHost: pod\r\n\r\n`);
  });
}

/** PortForward RPC → SPDY upgrade → one forwarded connection → the whole file. */
async function portForwardDownload(c: Contender, pod: PodRef, expect: number): Promise<void> {
  const url = await c.portForwardUrl!(pod, HTTP_PORT);
  const up = await spdyUpgrade(url, { protocols: ['portforward.k8s.io'] });
  if (!isUpgrade(up)) throw new Error(`port-forward upgrade: HTTP ${up.statusCode}: ${up.body.trim().slice(0, 200)}`);
  try {
    const fwd = await spdyForward(up.conn, HTTP_PORT, 0);
    await httpGetOver(fwd.data, `/${HTTP_FILE}`, expect, () => fwd.errorText);
  } finally {
    await up.conn.shutdown(2000).catch(() => undefined);
    up.socket.destroy();
  }
}

/** The floor of the download: the same file from the same httpd, over the bench bridge to the pod IP. */
function directDownload(ip: string, expect: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: ip, port: HTTP_PORT, path: `/${HTTP_FILE}`, agent: false }, (res) => {
      let got = 0;
      res.on('data', (c: Buffer) => (got += c.length));
      res.on('end', () => (res.statusCode === 200 && got === expect ? resolve() : reject(new Error(`GET http://${ip}:${HTTP_PORT}/${HTTP_FILE}: HTTP ${res.statusCode}, ${got} of ${expect} bytes`))));
      res.on('error', reject);
    });
    req.on('error', (err) => reject(new Error(`GET http://${ip}:${HTTP_PORT}/${HTTP_FILE}: ${err.message}`)));
  });
}

async function spdyExecTrue(c: Contender, ctr: ContainerRef): Promise<void> {
  const r = await spdyExec(await c.execUrl!(ctr, ['true']), { stdout: true, stderr: true });
  const code = exitCodeOf(parseStatus(r));
  if (code !== 0) throw new Error(`exec true over SPDY in ${ctr.id.slice(0, 12)}: exit ${code ?? '?'}, status ${r.status.slice(0, 200)}`);
}

interface StreamPods {
  exec: ContainerRef;
  httpPod: PodRef;
}

/**
 * ExecSync and SPDY exec of `true` in a long-lived pod, and a port-forward
 * download from busybox httpd, per CRI contender; the floor runs `runsc exec`
 * in gvisor-cri's own sandbox and downloads straight from its pod IP.
 */
export async function streamCase(rec: Recorder, contenders: readonly Contender[], opts: CaseOptions, env: BenchEnv): Promise<void> {
  const g = gvisorCri(contenders, 'stream', rec);
  if (!g?.runscRoot) return;
  const cs = contenders.filter((c) => c.cases.has('stream') && c.execUrl && c.portForwardUrl && c.startContainerWith && c.pullImage);
  const steps = [STEP.execSame, STEP.execSpdy, STEP.portForward(HTTP_FILE_MIB)];
  const expect = HTTP_FILE_MIB * 2 ** 20;
  rec.declare(...steps);
  rec.bytes.set(steps[2], expect);
  try {
    const pods = new Map<ContenderName, StreamPods>();
    for (const c of cs) {
      try {
        await bounded(async () => {
          await c.pullImage!(env.images.http);
          const exec = await c.startContainer(await c.runPod('st-exec'));
          const httpPod = await c.runPod('st-http');
          await c.startContainerWith!(httpPod, env.images.http, ['httpd', '-f', '-p', String(HTTP_PORT), '-h', '/www']);
          pods.set(c.name, { exec, httpPod });
        });
      } catch (err) {
        for (const s of steps) rec.failure(c.name, s, new Error(`setting up the case's pods: ${(err as Error).message}`));
      }
    }
    const gp = pods.get('gvisor-cri');
    if (!gp) return;
    const floorRunsc = new SandboxDriver(new Runsc({ binary: '/usr/bin/runsc', root: g.runscRoot, platform: 'systrap' }), silentLogger);
    const rawExec = async (): Promise<void> => {
      const proc = buildExecProcess({ args: ['true'], env: [PATH_ENV], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false, capabilities: [] });
      const r = await floorRunsc.execSync(gp.exec.id, proc, 30_000);
      if (r.exitCode !== 0) throw new Error(`runsc exec true in ${gp.exec.id.slice(0, 12)} exited ${r.exitCode}: ${r.stderr.toString().trim()}`);
    };
    const podIp = await bounded(() => g.podIp!(gp.httpPod)).catch((err: unknown) => {
      rec.failure('raw', steps[2], new Error(`PodSandboxStatus for the pod IP: ${(err as Error).message}`));
      return undefined;
    });
    const failedInARow = new Map<ContenderName, number>();
    const download = async (name: ContenderName, record: boolean, fn: () => Promise<void>): Promise<void> => {
      if ((failedInARow.get(name) ?? 0) >= GIVE_UP_AFTER) {
        if (record) rec.skipped(name, steps[2]);
        return;
      }
      const r = await timedAs(rec, name, steps[2], record, fn, DOWNLOAD_LIMIT_MS);
      failedInARow.set(name, r.ok ? 0 : (failedInARow.get(name) ?? 0) + 1);
      if (!r.ok && failedInARow.get(name) === GIVE_UP_AFTER) rec.notes.push(`stream (${name}): port-forward download failed ${GIVE_UP_AFTER} times in a row; not tried again (the rest counted as skipped)`);
    };
    const sides: Side[] = cs.filter((c) => pods.has(c.name)).map((c) => ({
      name: c.name,
      async once(record) {
        const p = pods.get(c.name)!;
        await timedAs(rec, c.name, steps[0], record, () => c.exec(p.exec));
        await timedAs(rec, c.name, steps[1], record, () => spdyExecTrue(c, p.exec));
        await download(c.name, record, () => portForwardDownload(c, p.httpPod, expect));
      },
    }));
    sides.push({
      name: 'raw',
      async once(record) {
        await timedAs(rec, 'raw', steps[0], record, rawExec);
        await timedAs(rec, 'raw', steps[1], record, rawExec);
        if (podIp) await download('raw', record, () => directDownload(podIp, expect));
        else if (record) rec.skipped('raw', steps[2]);
      },
    });
    await interleave('stream', sides, rec, opts);
  } finally {
    for (const c of cs) await clearPods(c, opts.log);
  }
}
