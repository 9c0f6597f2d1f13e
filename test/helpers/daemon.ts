/**
 * Starts the real daemon (bin/gvisor-cri, built) as a separate process on a
 * temporary socket with temporary dirs, and talks to it as kubelet would:
 * gRPC over the unix socket with a client built from our proto.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { createCriClients } from '../../cri-api/server.js';
import { DAEMON_NODE_FLAGS } from '../../daemon/install.js';
import { socketAnswers } from '../../daemon/socket.js';
import { allocateTestNet } from './test-net.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BIN = join(REPO_ROOT, 'bin', 'gvisor-cri');

export interface TestDaemon {
  dir: string;
  socket: string;
  stateDir: string;
  runDir: string;
  cniConfDir: string;
  logDir: string;
  proc: ChildProcess;
  /** Everything the daemon printed so far (its pino log). */
  output(): string;
  clients: ReturnType<typeof createCriClients>;
  /** Calls a unary RPC and resolves with its response (rejects with the gRPC ServiceError). */
  call<Res = unknown>(service: 'runtime' | 'image', rpc: string, req: object, timeoutMs?: number): Promise<Res>;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Stop (if running) and remove the temp dirs. */
  cleanup(): Promise<void>;
}

/**
 * A CNI conflist for a test bridge; its bridge and subnet come from the
 * allocator (test-net.ts). `key` names the network within this process: a
 * restarted daemon asks with the same key and gets the same network.
 */
export function testConflist(key: number | string, chained: object[] = []): string {
  const net = allocateTestNet(`e2e-${key}`);
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: `gvcri-e2e-${net.slot}`,
    plugins: [
      { type: 'bridge', bridge: net.bridge, isGateway: true, ipMasq: true, ipam: { type: 'host-local', ranges: [[{ subnet: net.subnet }]] } },
      { type: 'portmap', capabilities: { portMappings: true } },
      ...chained,
    ],
  });
}

export interface StartOptions {
  /** Extra daemon flags. */
  args?: string[];
  /** Write this conflist into the CNI conf dir before start (omit for an empty dir). */
  conflist?: string;
  /** Reuse dirs of an earlier daemon (restart tests). */
  reuse?: Pick<TestDaemon, 'dir' | 'socket' | 'stateDir' | 'runDir' | 'cniConfDir' | 'logDir'>;
  /** Wait for the socket at most this long. */
  startTimeoutMs?: number;
  /** Run this program (an unpacked release's bin/gvisor-cri) with this environment, instead of this node on the repo's bin. */
  command?: ReleaseCommand;
}

export interface ReleaseCommand {
  bin: string;
  env: NodeJS.ProcessEnv;
}

export function spawnDaemon(args: string[], command?: ReleaseCommand): ChildProcess {
  if (command) return spawn(command.bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: command.env });
  // With the V8 flags the unit and bin/gvisor-cri's launcher line give it: tests run the daemon as installed.
  return spawn(process.execPath, [...DAEMON_NODE_FLAGS, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

async function waitForSocket(path: string, proc: ChildProcess, timeoutMs: number, output: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`daemon exited with ${proc.exitCode} before serving:\n${output()}`);
    // Existing is not enough: a killed daemon leaves its socket behind.
    if (await socketAnswers(path)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`daemon did not create ${path} within ${timeoutMs} ms:\n${output()}`);
}

export async function startDaemon(opts: StartOptions = {}): Promise<TestDaemon> {
  const dirs = opts.reuse ?? (await (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gvcri-e2e-'));
    return { dir, socket: join(dir, 'run', 'gvisor-cri.sock'), stateDir: join(dir, 'state'), runDir: join(dir, 'run'), cniConfDir: join(dir, 'cni'), logDir: join(dir, 'logs') };
  })());
  await mkdir(dirs.cniConfDir, { recursive: true });
  await mkdir(dirs.logDir, { recursive: true });
  if (opts.conflist !== undefined) await writeFile(join(dirs.cniConfDir, '10-test.conflist'), opts.conflist);
  const args = [
    '--config', join(dirs.dir, 'config.toml'),
    '--socket', dirs.socket,
    '--state-dir', dirs.stateDir,
    '--run-dir', dirs.runDir,
    '--cni-conf-dir', dirs.cniConfDir,
    '--log-level', 'debug',
    '--audit-log', join(dirs.dir, 'audit.log'),
    ...(opts.args ?? []),
  ];
  await writeFile(join(dirs.dir, 'config.toml'), '# test daemon: everything comes from flags\n');
  const proc = spawnDaemon(args, opts.command);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const output = (): string => out;
  await waitForSocket(dirs.socket, proc, opts.startTimeoutMs ?? 60_000, output);
  const clients = createCriClients(dirs.socket);
  const exited = new Promise<number | null>((resolve) => {
    if (proc.exitCode !== null) resolve(proc.exitCode);
    else proc.once('exit', (code) => resolve(code));
  });
  const daemon: TestDaemon = {
    ...dirs,
    proc,
    output,
    clients,
    call<Res>(service: 'runtime' | 'image', rpc: string, req: object, timeoutMs = 120_000): Promise<Res> {
      const client = clients[service] as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => void>;
      const fn = client[rpc];
      if (typeof fn !== 'function') throw new Error(`no RPC ${rpc} on ${service} client`);
      return new Promise((resolve, reject) => {
        fn.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      clients.close();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    async cleanup() {
      await daemon.stop('SIGTERM');
      if (!opts.reuse) await rm(dirs.dir, { recursive: true, force: true });
    },
  };
  return daemon;
}

/** Runs `gvisor-cri ARGS` to completion; its exit code and output. */
export function runCli(args: string[], timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawnDaemon(args);
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Removes every pod of a daemon that still runs (test teardown; errors ignored). */
export async function removeAllPods(d: TestDaemon | undefined): Promise<void> {
  if (!d || d.proc.exitCode !== null || d.proc.signalCode !== null) return;
  const pods = await d.call<{ items: { id: string }[] }>('runtime', 'ListPodSandbox', {}).catch(() => ({ items: [] }));
  for (const p of pods.items) await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.id }).catch(() => undefined);
}

/** The daemon tests' name for eventually (wait.ts). */
export { eventually as waitFor } from './wait.js';
