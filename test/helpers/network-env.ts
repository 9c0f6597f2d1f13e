import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { silentLogger } from '../../cri-api/logger.js';
import type { NetworkOptions } from '../../network/index.js';
import { allocateTestNet } from './test-net.js';

/**
 * A private CNI world for one network test file: its own conf/run/state
 * dirs, bridge name, network name and subnet (from the allocator in
 * test-net.ts, so files and concurrent runs do not collide), leak counters,
 * and a cleanup that also removes what an earlier killed run left behind.
 */

export const CNI_BIN_DIRS = ['/opt/cni/bin', '/usr/lib/cni'];
const TMP_PREFIX = 'gvcri-net';

export interface LeakCounts {
  netnsMounts: number;
  netnsFiles: number;
  veths: number;
  ipamAllocations: number;
  iptablesRules: number;
}

export interface NetTestEnv {
  root: string;
  confDir: string;
  runDir: string;
  stateDir: string;
  ipamDir: string;
  bridge: string;
  netName: string;
  /** e.g. "10.201.37" */
  prefix: string;
  subnet: string;
  gateway: string;
  options(extra?: Partial<NetworkOptions>): NetworkOptions;
  /** A bridge + host-local + portmap conflist (the usual node config) as `<file>` in confDir. */
  writeConflist(o?: { file?: string; subnet?: string; cniVersion?: string; dir?: string; extraPlugins?: object[] }): Promise<string>;
  counts(): Promise<LeakCounts>;
  /** The bridge keeps its gateway address: delete it before using another subnet on it. */
  deleteBridge(): Promise<void>;
  cleanup(): Promise<void>;
}

interface Recorded {
  bridge: string;
  netName: string;
  prefix: string;
}

async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${dir}/`));
}

/** Deletes NAT rules naming the network or its subnet, and the per-pod chains they jump to. */
async function removeIptablesRules(netName: string, prefix: string): Promise<void> {
  const save = (await execa('iptables-save', ['-t', 'nat'], { reject: false })).stdout;
  const chains = new Set<string>();
  const deletes: string[] = [];
  for (const line of save.split('\n')) {
    if (!line.startsWith('-A ') || !(line.includes(netName) || line.includes(`${prefix}.`))) continue;
    const target = /-j (CNI-[A-Za-z0-9-]+)/.exec(line)?.[1];
    if (target && !target.startsWith('CNI-HOSTPORT-')) chains.add(target);
    deletes.push(`-D ${line.slice(3)}`);
  }
  for (const c of chains) deletes.push(`-F ${c}`, `-X ${c}`);
  if (deletes.length === 0) return;
  // iptables-restore parses the saved quoting itself; each line on its own so one stale rule does not block the rest.
  for (const d of deletes) await execa('iptables-restore', ['-w', '--noflush'], { input: `*nat\n${d}\nCOMMIT\n`, reject: false });
}

async function removeWorld(root: string, r: Recorded | undefined): Promise<void> {
  for (const m of (await mountsUnder(root)).reverse()) await execa('umount', [m], { reject: false });
  if (r) {
    await execa('ip', ['link', 'del', r.bridge], { reject: false });
    await removeIptablesRules(r.netName, r.prefix);
  }
  await rm(root, { recursive: true, force: true });
}

/** Whether pid is a live process (a zombie whose parent died before reaping it counts as dead). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat !== '' && !/^\d+ \(.*\) Z /s.test(stat);
}

/** Removes the worlds of earlier test runs whose process is gone. */
async function removeLeftovers(): Promise<void> {
  const re = new RegExp(`^${TMP_PREFIX}-(\\d+)-`);
  for (const name of await readdir(tmpdir())) {
    const pid = Number(re.exec(name)?.[1] ?? NaN);
    if (Number.isNaN(pid) || (await alive(pid))) continue;
    const root = join(tmpdir(), name);
    const r = await readFile(join(root, 'world.json'), 'utf8').then((t) => JSON.parse(t) as Recorded).catch(() => undefined);
    await removeWorld(root, r);
  }
}

/** `key` names the world within this test process (test-net.ts). */
export async function makeNetTestEnv(key = 'net'): Promise<NetTestEnv> {
  await removeLeftovers();
  const root = await mkdtemp(join(tmpdir(), `${TMP_PREFIX}-${process.pid}-`));
  const net = allocateTestNet(key);
  const prefix = net.prefix;
  const rec: Recorded = { bridge: net.bridge, netName: `gvt-net${net.slot}-${process.pid}`, prefix };
  await writeFile(join(root, 'world.json'), JSON.stringify(rec));
  await mkdir(join(root, 'conf'));
  const env: NetTestEnv = {
    root,
    confDir: join(root, 'conf'),
    runDir: join(root, 'run'),
    stateDir: join(root, 'state'),
    ipamDir: join(root, 'ipam'),
    bridge: rec.bridge,
    netName: rec.netName,
    prefix,
    subnet: net.subnet,
    gateway: net.gateway,
    options: (extra) => ({
      confDir: env.confDir,
      binDirs: CNI_BIN_DIRS,
      runDir: env.runDir,
      stateDir: env.stateDir,
      pluginTimeoutMs: 20_000,
      logger: silentLogger,
      ...extra,
    }),
    async writeConflist(o = {}) {
      const file = join(o.dir ?? env.confDir, o.file ?? '10-test.conflist');
      const conf = {
        cniVersion: o.cniVersion ?? '1.0.0',
        name: env.netName,
        plugins: [
          {
            type: 'bridge',
            bridge: env.bridge,
            isGateway: true,
            ipMasq: true,
            ipam: { type: 'host-local', ranges: [[{ subnet: o.subnet ?? env.subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: env.ipamDir },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
          ...(o.extraPlugins ?? []),
        ],
      };
      await writeFile(file, JSON.stringify(conf, null, 2));
      return file;
    },
    async counts() {
      const veths = (await execa('ip', ['-o', 'link', 'show', 'master', env.bridge], { reject: false })).stdout.split('\n').filter((l) => l.trim() !== '').length;
      const ipam = await readdir(join(env.ipamDir, env.netName)).catch(() => [] as string[]);
      const rules = (await execa('iptables-save', [], { reject: false })).stdout.split('\n').filter((l) => l.includes(env.netName) || l.includes(`${prefix}.`));
      return {
        netnsMounts: (await mountsUnder(env.runDir)).length,
        netnsFiles: (await readdir(join(env.runDir, 'netns')).catch(() => [] as string[])).length,
        veths,
        ipamAllocations: ipam.filter((f) => /^\d+\.\d+\.\d+\.\d+$|:/.test(f)).length,
        iptablesRules: rules.length,
      };
    },
    async deleteBridge() {
      await execa('ip', ['link', 'del', env.bridge], { reject: false });
    },
    cleanup: () => removeWorld(root, rec),
  };
  return env;
}

/** Runs a command inside a network namespace (by path). */
export async function inNetns(netns: string, cmd: string[], o: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await execa('nsenter', [`--net=${netns}`, ...cmd], { reject: false, input: o.input ?? '', timeout: o.timeoutMs ?? 10_000 });
  return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * One TCP exchange with busybox nc: a one-shot listener (in listenNs, or the
 * host when undefined) answers "pong", the client (in dialNs or the host)
 * sends "ping", retrying until the listener is up. Resolves to what each side got.
 */
export async function tcpExchange(o: { listenNs?: string; port: number; dialNs?: string; dialAddr: string; dialPort?: number }): Promise<{ server: string; client: string }> {
  const wrap = (ns: string | undefined, cmd: string[]): [string, string[]] => (ns ? ['nsenter', [`--net=${ns}`, ...cmd]] : [cmd[0]!, cmd.slice(1)]);
  // The listener answers only after it has read the line: with the answer on its stdin, nc could hit
  // stdin's end and exit before the client's line arrived.
  const [sc, sa] = wrap(o.listenNs, ['busybox', 'nc', '-l', '-p', String(o.port), '-e', 'sh', '-c', 'read line; echo pong; echo "$line" >&2']);
  const [cc, ca] = wrap(o.dialNs, ['busybox', 'nc', '-w', '2', o.dialAddr, String(o.dialPort ?? o.port)]);
  // One listener per attempt: busybox nc serves a single connection, and on a loaded machine a first
  // attempt can connect too early (refused) or end without an answer, which used up that listener.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const server = execa(sc, sa, { stdin: 'ignore', reject: false, timeout: 10_000 });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const c = await execa(cc, ca, { input: 'ping\n', reject: false, timeout: 5000 });
      if (c.exitCode === 0 && c.stdout !== '') return { server: (await server).stderr, client: c.stdout };
      if (Date.now() > deadline) return { server: '', client: `${c.stdout}${c.stderr}` };
    } finally {
      server.kill('SIGKILL');
    }
    await server.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A TCP port free on loopback right now. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
