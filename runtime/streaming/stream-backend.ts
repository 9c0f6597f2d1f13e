/**
 * What the streaming server's URLs lead to, over real pods: exec runs
 * `runsc exec` (inside a pseudo-terminal for tty), attach tees a running
 * container's own stdio, port-forward joins each forwarded TCP connection to
 * the pod IP when the port listens there, else to a relay (busybox nc)
 * exec'd in the pod's infra container, or, without one, to
 * `runsc port-forward --stream`.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { constants as osc } from 'node:os';
import { dirname, join } from 'node:path';
import { PassThrough, type Duplex, type Readable, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Logger } from '../../cri-api/logger.js';
import type { AttachRequest, ExecRequest, ExecResult, StreamBackend, StreamIO, TerminalSize } from '../../stream/index.js';
import { buildExecProcess } from '../spec/oci-spec.js';
import { filteredArgs } from '../seccomp/exec-helper.js';
import { recordedRunscFlags, runscCallFlags } from '../runsc/gvisor-flags.js';
import { killExec } from '../runsc/exec-kill.js';
import type { ExecExit, ExecProcess, TerminalExecProcess } from '../runsc/exec-process.js';
import { Runsc } from '../runsc/runsc.js';
import type { PodRuntime } from '../core/pod-runtime.js';
import type { ContainerRecord, SandboxRecord } from '../records/store.js';

export interface RuntimeStreamBackendOptions {
  rt: PodRuntime;
  /** The same runsc (root and flags) the runtime drives. */
  runsc: Runsc;
  logger: Logger;
  /** The infra rootfs's busybox (InfraRootfs.busybox), whose nc relays port-forward; without it runsc port-forward is used. */
  busybox?: string;
}

/** How long runsc may take to dial the port-forward socket. */
const PORT_FORWARD_DIAL_MS = 10_000;
/** How long a connection to the pod IP may take before the node counts it as unreachable; over a bridge it takes well under a millisecond. */
const POD_IP_DIAL_MS = 1_000;
/** Terminal size until the client sends one. */
const DEFAULT_COLS = 80;
const DEFAULT_ROWS = 24;

/** Per-exec files: the process spec runsc reads, the in-sandbox pid it writes, its own log, its stdio FIFOs. */
interface ExecFiles {
  processFile: string;
  internalPidFile: string;
  logFile: string;
  /** Prefix of the stdio FIFOs when the reaper runs the exec (runsc/exec-process.ts). */
  fifoBase: string;
}

export class RuntimeStreamBackend implements StreamBackend {
  private readonly rt: PodRuntime;
  private readonly runsc: Runsc;
  private readonly logger: Logger;
  private readonly workDir: string;
  private readonly busybox: string | undefined;
  /** Pods whose IP the node could not connect to (see dialPodIp). */
  private readonly podIpUnreachable = new Set<string>();
  private seq = 0;

  constructor(opts: RuntimeStreamBackendOptions) {
    this.rt = opts.rt;
    this.runsc = opts.runsc;
    this.logger = opts.logger;
    this.busybox = opts.busybox;
    this.workDir = join(dirname(opts.runsc.options.root), 'stream');
  }

  async exec(req: ExecRequest, io: StreamIO): Promise<ExecResult> {
    const c = this.rt.requireRunningContainer(req.containerId, 'exec');
    const proc = buildExecProcess({ args: filteredArgs(c.seccompFilter, req.cmd), env: c.env, cwd: c.cwd, user: c.user, terminal: req.tty, capabilities: c.capabilities, noNewPrivileges: c.noNewPrivileges });
    // As containerd: a terminal without TERM confuses most programs.
    if (req.tty && !proc.env.some((e) => e.startsWith('TERM='))) proc.env.push('TERM=xterm');
    const base = await this.tempBase(c.id);
    const processFile = `${base}.json`;
    const internalPidFile = `${base}.pid`;
    const logFile = `${base}.log`;
    await writeFile(processFile, JSON.stringify(proc), { mode: 0o600 });
    const log = this.logger.child({ container: c.id, cmd: req.cmd[0], tty: req.tty });
    log.debug('exec started');
    try {
      const files = { processFile, internalPidFile, logFile, fifoBase: base };
      const code = req.tty ? await this.execTerminal(c, files, io) : await this.execPiped(c, files, io);
      await this.checkRunscFailure(c, logFile);
      log.debug({ exitCode: code }, 'exec finished');
      return { exitCode: code };
    } finally {
      await rm(processFile, { force: true });
      await rm(internalPidFile, { force: true });
      await rm(logFile, { force: true });
    }
  }

  async attach(req: AttachRequest, io: StreamIO): Promise<void> {
    const c = this.rt.requireRunningContainer(req.containerId, 'attach');
    // With a terminal the client has one output: stderr goes there too.
    const out: Record<'stdout' | 'stderr', Writable | undefined> = { stdout: io.stdout, stderr: req.tty ? io.stdout : io.stderr };
    const sub = this.rt.io.subscribeOutput(c.id, (stream, chunk) => {
      const w = out[stream];
      if (w && !w.destroyed && !w.writableEnded) w.write(chunk);
    });
    if (!sub) throw new Error(`attach to container ${c.name} (${c.id.slice(0, 12)}): its output is not being read (not running?)`);
    const stdinDone = io.stdin ? this.attachStdin(c, io.stdin, io.signal) : Promise.resolve();
    if (io.resize && c.terminal) void this.followSizes(c, io.resize, () => io.signal.aborted, (s) => this.rt.io.resizeTerminal(c.id, s.width, s.height));
    try {
      await new Promise<void>((resolve) => {
        if (io.signal.aborted) return resolve();
        io.signal.addEventListener('abort', () => resolve(), { once: true });
        void sub.ended.then(() => resolve());
      });
    } finally {
      sub.unsubscribe();
      io.stdin?.unpipe();
      await stdinDone;
    }
  }

  async portForward(podSandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const pod = this.rt.requireReadyPod(podSandboxId, 'port-forward');
    // A host-network pod shares the node's network: its ports are the host's loopback ports.
    if (pod.hostNetwork) {
      this.logger.debug({ pod: pod.id, port, path: 'host' }, 'port-forward connection');
      return splice(conn, await dialHost(port, signal), signal);
    }
    const direct = await this.dialPodIp(pod, port, signal);
    if (direct) {
      this.logger.debug({ pod: pod.id, port, path: 'pod-ip', address: direct.remoteAddress }, 'port-forward connection');
      return splice(conn, direct, signal);
    }
    this.logger.debug({ pod: pod.id, port, path: this.busybox ? 'relay' : 'runsc' }, 'port-forward connection');
    if (this.busybox) return this.relayInSandbox(pod, this.busybox, port, conn, signal);
    await splice(conn, await this.dialSandbox(pod, port, signal), signal);
  }

  /**
   * The fast path: a port the pod listens on with a wildcard (or its pod IP)
   * address is the same socket kubelet's "localhost:PORT in the pod" reaches,
   * and the node reaches it at the pod IP (as kubelet's probes do), with no
   * process in between. Refused (gVisor answers RST) means nothing listens
   * there: loopback-only or closed, which the in-sandbox relay then decides.
   * A pod IP the node cannot reach (a CNI without node-to-pod routes) is
   * remembered, so only its first connection pays the wait.
   */
  private async dialPodIp(pod: SandboxRecord, port: number, signal: AbortSignal): Promise<net.Socket | undefined> {
    const ip = pod.ips.find((a) => net.isIPv4(a)) ?? pod.ips[0];
    if (ip === undefined || this.podIpUnreachable.has(pod.id)) return undefined;
    try {
      return await dialTcp(ip, port, signal, POD_IP_DIAL_MS);
    } catch (err) {
      if (signal.aborted) throw err;
      if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') return undefined;
      for (const id of this.podIpUnreachable) if (!this.rt.sandboxes.get(id)) this.podIpUnreachable.delete(id);
      this.podIpUnreachable.add(pod.id);
      this.logger.info({ pod: pod.id, ip, port, err: (err as Error).message }, 'pod IP not reachable from the node; port-forward to this pod relays inside the sandbox');
      return undefined;
    }
  }

  /**
   * runsc 20240729's own port-forward panics the sentry on TCP segments over
   * 16 KiB (every bulk download), killing the pod; a relay process inside the
   * sandbox moves the bytes through ordinary exec stdio instead.
   */
  private async relayInSandbox(pod: SandboxRecord, busybox: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    const base = await this.tempBase(pod.id);
    const processFile = `${base}.json`;
    const internalPidFile = `${base}.pid`;
    const proc = buildExecProcess({ args: [busybox, 'nc', '127.0.0.1', String(port)], env: [], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false, capabilities: [] });
    await writeFile(processFile, JSON.stringify(proc), { mode: 0o600 });
    let sub: ExecProcess | undefined;
    try {
      sub = await this.runsc.spawnExec(pod.id, { processFile, internalPidFile }, { stdin: true, stdout: true, stderr: true }, base);
      let stderr = '';
      sub.stderr?.on('data', (chunk: Buffer) => {
        if (stderr.length < 4096) stderr += chunk.toString();
      });
      sub.stdin?.on('error', () => undefined);
      conn.on('error', () => undefined);
      if (sub.stdin) conn.pipe(sub.stdin);
      // Settled once the relay's output is all in conn (not at its exit, which can come first).
      const relayed = sub.stdout ? finished(sub.stdout).catch(() => undefined) : Promise.resolve();
      sub.stdout?.pipe(conn);
      const onAbort = (): void => void killExec(this.runsc, pod.id, internalPidFile, sub!.kill, this.logger);
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        const result = await sub.exited;
        await relayed;
        if (result.exitCode !== 0 && !signal.aborted) {
          throw new Error(`port-forward to port ${port} of pod ${pod.namespace}/${pod.name}: ${lastLine(stderr) || result.failure || `relay exit code ${result.exitCode ?? result.signal}`}`);
        }
      } finally {
        signal.removeEventListener('abort', onAbort);
        if (sub.stdin) conn.unpipe(sub.stdin);
      }
    } finally {
      await sub?.dispose();
      await rm(processFile, { force: true });
      await rm(internalPidFile, { force: true });
    }
  }

  // --- exec --------------------------------------------------------------------

  private async execPiped(c: ContainerRecord, f: ExecFiles, io: StreamIO): Promise<number> {
    const { internalPidFile } = f;
    const sub = await this.execRunsc(f.logFile, c).spawnExec(c.id, { processFile: f.processFile, internalPidFile }, { stdin: io.stdin !== undefined, stdout: io.stdout !== undefined, stderr: io.stderr !== undefined }, f.fifoBase);
    const outputs: Promise<void>[] = [];
    if (io.stdout && sub.stdout) outputs.push(pipeInto(sub.stdout, io.stdout));
    if (io.stderr && sub.stderr) outputs.push(pipeInto(sub.stderr, io.stderr));
    if (io.stdin && sub.stdin) {
      // The process may exit before reading all its input: EPIPE is not an error then.
      sub.stdin.on('error', () => undefined);
      io.stdin.pipe(sub.stdin);
    }
    const onAbort = (): void => void killExec(this.runsc, c.id, internalPidFile, sub.kill, this.logger);
    io.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const result = await sub.exited;
      await Promise.all(outputs);
      if (result.failure) throw new Error(`exec in container ${c.name} (${c.id.slice(0, 12)}): ${result.failure}`);
      return result.exitCode ?? signalExitCode(result.signal);
    } finally {
      io.signal.removeEventListener('abort', onAbort);
      if (io.stdin && sub.stdin) io.stdin.unpipe(sub.stdin);
      await sub.dispose();
    }
  }

  private async execTerminal(c: ContainerRecord, f: ExecFiles, io: StreamIO): Promise<number> {
    const { internalPidFile } = f;
    const size = { cols: DEFAULT_COLS, rows: DEFAULT_ROWS };
    const term = (await this.execRunsc(f.logFile, c).spawnTerminalExec(c.id, { processFile: f.processFile, internalPidFile }, f.fifoBase, size)) ?? (await this.execInPty(c, f, size));
    const output = io.stdout ? pipeInto(term.output, io.stdout) : finished(term.output.resume()).catch(() => undefined);
    const onInput = (chunk: Buffer): void => term.write(chunk);
    const onEnd = (): void => term.endInput();
    io.stdin?.on('data', onInput);
    io.stdin?.once('end', onEnd);
    let done = false;
    if (io.resize) void this.followSizes(c, io.resize, () => done, (s) => term.resize(s.width, s.height));
    const onAbort = (): void => void killExec(this.runsc, c.id, internalPidFile, term.kill, this.logger);
    io.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const result = await term.exited;
      await output;
      if (result.failure) throw new Error(`exec in container ${c.name} (${c.id.slice(0, 12)}): ${result.failure}`);
      return result.exitCode ?? signalExitCode(result.signal);
    } finally {
      done = true;
      io.signal.removeEventListener('abort', onAbort);
      io.stdin?.off('data', onInput);
      io.stdin?.off('end', onEnd);
      // Keeps reading (and dropping) whatever the client still sends, so its stream ends.
      io.stdin?.resume();
      await term.dispose();
    }
  }

  /** Without the reaper: runsc exec's own stdio is the terminal, a pty node-pty makes (and forks the daemon for). */
  private async execInPty(c: ContainerRecord, f: ExecFiles, size: { cols: number; rows: number }): Promise<TerminalExecProcess> {
    const pty = await loadPty(c);
    const args = this.execRunsc(f.logFile, c).execArgs(c.id, { processFile: f.processFile, internalPidFile: f.internalPidFile });
    const term = pty.spawn(this.runsc.options.binary, args, { cols: size.cols, rows: size.rows, cwd: '/', encoding: null });
    const output = new PassThrough();
    term.onData((data: string | Buffer) => {
      if (!output.writableEnded) output.write(typeof data === 'string' ? Buffer.from(data) : data);
    });
    const exited = new Promise<ExecExit>((resolve) =>
      term.onExit((e) => {
        output.end();
        resolve({ exitCode: e.signal ? 128 + e.signal : e.exitCode, signal: undefined, failure: undefined });
      }),
    );
    return {
      output,
      exited,
      write: (chunk) => term.write(chunk),
      // A terminal's end of input is its EOF character.
      endInput: () => term.write('\x04'),
      resize: (cols, rows) => term.resize(cols, rows),
      kill: () => term.kill('SIGKILL'),
      dispose: async () => undefined,
    };
  }

  /**
   * runsc exec logs "FATAL ERROR: ..." when it could not run the process at
   * all (program missing, container gone) and then dies of SIGPIPE without
   * a word on stderr (runsc 20240729): report that as an error, not as an
   * exit code. Only its --debug-log receives the line.
   */
  private async checkRunscFailure(c: ContainerRecord, logFile: string): Promise<void> {
    const text = await readFile(logFile, 'utf8').catch(() => '');
    const fatal = /FATAL ERROR:\s*(.*)/.exec(text);
    if (fatal) throw new Error(`exec in container ${c.name} (${c.id.slice(0, 12)}) failed: ${fatal[1]!.trim().slice(0, 2000)}`);
  }

  /**
   * The runtime's runsc, logging to `logFile` for this exec unless the
   * operator set a debug log of their own, with the pod's runsc flags
   * (an exec gets them only as global flags, gvisor-flags.ts).
   */
  private execRunsc(logFile: string, c: ContainerRecord): Runsc {
    const podFlags = runscCallFlags(recordedRunscFlags(this.rt.sandboxes.get(c.sandboxId)?.annotations ?? {}), 'exec');
    if (this.runsc.options.debugLog && podFlags.length === 0) return this.runsc;
    return new Runsc({ ...this.runsc.options, debugLog: this.runsc.options.debugLog ?? logFile, extraFlags: [...(this.runsc.options.extraFlags ?? []), ...podFlags] });
  }

  // --- attach --------------------------------------------------------------------

  /** Applies each terminal size the client sends (empty ones ignored) until `stopped()`: an exec's pty or an attached container's terminal. */
  private async followSizes(c: ContainerRecord, sizes: AsyncIterable<TerminalSize>, stopped: () => boolean, apply: (s: TerminalSize) => unknown): Promise<void> {
    try {
      for await (const s of sizes) {
        if (stopped()) break;
        if (s.width > 0 && s.height > 0) await apply(s);
      }
    } catch (err) {
      this.logger.debug({ err, container: c.id }, 'reading terminal sizes');
    }
  }

  /** Copies the client's stdin into the container's; with stdin_once the container's stdin closes when the client's ends. */
  private attachStdin(c: ContainerRecord, stdin: Readable, signal: AbortSignal): Promise<void> {
    const fifo = this.rt.io.stdinOf(c.id);
    if (!fifo) {
      stdin.resume();
      return Promise.resolve();
    }
    stdin.pipe(fifo.writable, { end: false });
    return new Promise<void>((resolve) => {
      const finish = (clientEnded: boolean): void => {
        signal.removeEventListener('abort', onAbort);
        if (clientEnded && c.stdinOnce) {
          void this.rt.io.closeStdin(c.id).catch((err: unknown) => this.logger.warn({ err, container: c.id }, 'closing container stdin after attach (stdin_once)')).then(() => resolve());
        } else {
          resolve();
        }
      };
      const onAbort = (): void => finish(false);
      signal.addEventListener('abort', onAbort, { once: true });
      stdin.once('end', () => finish(true));
    });
  }

  // --- port-forward ----------------------------------------------------------------

  /**
   * runsc dials a unix socket we listen on and hands the sentry that
   * connection, already connected to the port inside the pod; runsc itself
   * then exits. A refused port makes runsc fail instead.
   */
  private async dialSandbox(pod: SandboxRecord, port: number, signal: AbortSignal): Promise<net.Socket> {
    const socketPath = `${await this.tempBase(pod.id)}.sock`;
    const server = net.createServer({ allowHalfOpen: true });
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', (s: net.Socket) => resolve(s)));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    const ctx = `port-forward to port ${port} of pod ${pod.namespace}/${pod.name}`;
    try {
      const sub = this.runsc.spawnPortForward(pod.id, port, socketPath, AbortSignal.any([signal, AbortSignal.timeout(PORT_FORWARD_DIAL_MS)]));
      const result = await sub;
      if (result.exitCode !== 0) {
        accepted.then((s) => s.destroy(), () => undefined);
        const detail = lastLine(typeof result.stderr === 'string' ? result.stderr : '') || (result.isCanceled ? 'cancelled' : result.shortMessage ?? `exit code ${result.exitCode}`);
        throw new Error(`${ctx}: ${detail}`);
      }
      // runsc connected before it asked the sentry, so the connection is already queued.
      return await Promise.race([accepted, rejectAfter(PORT_FORWARD_DIAL_MS, `${ctx}: runsc never connected to ${socketPath}`)]);
    } finally {
      server.close();
      await rm(socketPath, { force: true });
    }
  }

  // --- files ---------------------------------------------------------------------

  /** A fresh path prefix for one exec's or forward's files (short: unix socket paths are limited to 108 bytes). */
  private async tempBase(id: string): Promise<string> {
    await mkdir(this.workDir, { recursive: true, mode: 0o700 });
    return join(this.workDir, `${id.slice(0, 12)}-${++this.seq}-${randomBytes(3).toString('hex')}`);
  }
}

/** Copies from into to (leaving `to` open) and resolves once `from` has ended. */
function pipeInto(from: Readable, to: Writable): Promise<void> {
  return new Promise((resolve) => {
    from.pipe(to, { end: false });
    from.once('end', resolve);
    from.once('close', resolve);
    from.once('error', () => resolve());
  });
}

/** 128+N for signal N, as a shell reports it. */
function signalExitCode(signal: string | undefined): number {
  const n = signal ? (osc.signals as Record<string, number>)[signal] : undefined;
  return n === undefined ? 255 : 128 + n;
}

function lastLine(text: string): string {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '').pop()?.slice(0, 1000) ?? '';
}

function rejectAfter(ms: number, message: string): Promise<never> {
  return new Promise((_resolve, reject) => setTimeout(() => reject(new Error(message)), ms).unref());
}

function dialHost(port: number, signal: AbortSignal): Promise<net.Socket> {
  return dialTcp('127.0.0.1', port, signal).catch((err: Error) => {
    throw new Error(`port-forward to port ${port} of a host-network pod: dialing 127.0.0.1:${port}: ${err.message}`);
  });
}

/**
 * A TCP connection, half-open allowed, without Nagle's delay (as Go's
 * dialer, kubelet's side, does). Rejects with the socket's own error, or
 * ETIMEDOUT after timeoutMs; signal bounds only the connecting.
 */
function dialTcp(host: string, port: number, signal: AbortSignal, timeoutMs = PORT_FORWARD_DIAL_MS): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const sock = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const fail = (err: Error): void => {
      done();
      sock.destroy();
      reject(err);
    };
    const onAbort = (): void => fail(signal.reason as Error);
    const timer = setTimeout(() => fail(Object.assign(new Error(`connect ETIMEDOUT ${host}:${port} (no answer in ${timeoutMs} ms)`), { code: 'ETIMEDOUT' })), timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      sock.off('error', fail);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    sock.once('error', fail);
    sock.once('connect', () => {
      done();
      resolve(sock);
    });
  });
}

/**
 * Copies both ways, passing on the client's half-close, and resolves once
 * the pod's side has ended and that end reached the client (as containerd
 * does), either side is torn down, or signal aborts.
 */
function splice(conn: Duplex, upstream: net.Socket, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', finish);
      conn.unpipe(upstream);
      upstream.unpipe(conn);
      upstream.destroy();
      resolve();
    };
    if (signal.aborted) return finish();
    signal.addEventListener('abort', finish, { once: true });
    upstream.on('error', finish);
    conn.on('error', finish);
    conn.pipe(upstream);
    upstream.pipe(conn);
    conn.once('finish', finish);
    upstream.once('close', finish);
    conn.once('close', finish);
  });
}

/** node-pty, loaded on first tty exec: a node without it still serves everything else. */
async function loadPty(c: ContainerRecord): Promise<typeof import('node-pty')> {
  try {
    return await import('node-pty');
  } catch (err) {
    throw new Error(`exec with a terminal in container ${c.name} (${c.id.slice(0, 12)}): the node-pty module is not usable on this node (${(err as Error).message}); run without tty`);
  }
}
