/**
 * The one typed wrapper over the runsc binary: global flags, one method per
 * subcommand, timeouts, and the mapping of runsc's failures to CriError.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execa, type Options, type ResultPromise } from 'execa';
import type { Launcher } from '../../common/index.js';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import { reaperCanRun, startExec, startTerminalExec, type ExecProcess, type ExecStdio, type TerminalExecProcess } from './exec-process.js';
import { MASK_FAILED_EXIT, type Reaper } from './reaper.js';

export type RunscNetwork = 'sandbox' | 'host' | 'none';

export interface RunscOptions {
  /** Path of the runsc binary. */
  binary: string;
  /** Directory of runsc's container state (--root). */
  root: string;
  platform?: string;
  /** Value of --overlay2, e.g. "root:memory" or "root:dir=/run/x"; omitted when the runsc has no --overlay2. */
  overlay2?: string;
  /** Default --network; `create` of a sandbox may override it. */
  network?: RunscNetwork;
  /** --debug-log target; a trailing slash makes it a directory. */
  debugLog?: string;
  /** Load OCI seccomp profiles inside the sandbox (--oci-seccomp). */
  ociSeccomp?: boolean;
  extraFlags?: readonly string[];
  /** --pod-init-config of every new sandbox: the trace session it starts with (option trace-session-config). */
  podInitConfig?: string;
  /**
   * Launches `runsc create`, `start` and `run` so that the sandbox and gofer
   * processes they leave behind are reaped at once (see reaper.ts); without
   * it they go to pid 1.
   */
  reaper?: Reaper;
  /**
   * Runs the calls whose output is read back (state, wait, kill, delete,
   * events...) without forking the daemon (common/launcher.ts); execa when
   * absent or not running.
   */
  launcher?: Launcher;
  /** Timeout of ordinary (non-waiting) calls, in ms. */
  timeoutMs?: number;
  /** Told of every finished runsc call (metrics): subcommand, wall time, success. */
  onCommand?: (subcommand: string, ms: number, ok: boolean) => void;
}

/** Host file descriptors given to runsc as the container's stdio. */
export interface RunscStdio {
  stdin?: number | 'ignore';
  stdout?: number | 'ignore';
  stderr?: number | 'ignore';
}

/** What went wrong, for callers that treat some failures as normal states. */
export type RunscErrorKind = 'not-found' | 'not-running' | 'timeout' | 'cancelled' | 'other';

/** A failed runsc call: names the subcommand, the container and runsc's own words. */
export class RunscError extends CriError {
  readonly kind: RunscErrorKind;
  readonly subcommand: string;
  readonly containerId: string;
  readonly stderr: string;

  constructor(kind: RunscErrorKind, subcommand: string, containerId: string, detail: string) {
    const code = kind === 'not-found' ? GrpcStatus.NOT_FOUND : kind === 'timeout' ? GrpcStatus.DEADLINE_EXCEEDED : kind === 'cancelled' ? GrpcStatus.CANCELLED : GrpcStatus.INTERNAL;
    super(code, `runsc ${subcommand} ${containerId}: ${detail}`);
    this.name = 'RunscError';
    this.kind = kind;
    this.subcommand = subcommand;
    this.containerId = containerId;
    this.stderr = detail;
  }
}

/** True when err says the container (or its whole sandbox) no longer runs or exists. */
export function isGone(err: unknown): boolean {
  return err instanceof RunscError && (err.kind === 'not-found' || err.kind === 'not-running');
}

/** `runsc state` output. */
export interface RunscState {
  id: string;
  status: 'creating' | 'created' | 'running' | 'stopped' | 'paused' | string;
  /** The sandbox process's pid (for sub-containers too). */
  pid: number;
  bundle: string;
  annotations?: Record<string, string>;
}

/** One row of `runsc list --format json`. */
export interface RunscListEntry {
  id: string;
  pid: number;
  status: string;
  bundle: string;
}

/** `runsc events --stats` output (the fields gvisor-cri reads). */
export interface RunscStats {
  type: string;
  id: string;
  data?: {
    cpu?: { usage?: { total?: number; user?: number; kernel?: number } };
    memory?: { usage?: { usage?: number; limit?: number }; cache?: number; raw?: Record<string, number> };
    pids?: { current?: number; limit?: number };
  };
}

/** One row of `runsc ps --format json`. */
export interface RunscProcess {
  UID: number;
  PID: number;
  PPID: number;
  C: number;
  STIME: string;
  Cmd: string;
}

export interface CreateOptions {
  bundle: string;
  pidFile?: string;
  /** The root (infra) container takes its stdio from create. */
  stdio?: RunscStdio;
  /** --network for this sandbox, overriding the default. */
  network?: RunscNetwork;
  /** Creates a new sandbox (the pod's infra container): daemon-wide sandbox settings apply. */
  sandbox?: boolean;
  /** Extra global flags of this call (a pod's runsc flags, gvisor-flags.ts). */
  flags?: readonly string[];
  timeoutMs?: number;
}

export interface StartOptions {
  /** Sub-containers take their stdio from start, not create. */
  stdio?: RunscStdio;
  /**
   * Run start in a private mount namespace where /proc/sys/net/core, as seen
   * from this netns, is an empty tmpfs (gvisor.md "Kernel >= 6.x").
   */
  netnsWorkaround?: string;
  /** --network of the sandbox being started; must match what `create` was given. */
  network?: RunscNetwork;
  /** Extra global flags of this call (a pod's runsc flags, gvisor-flags.ts). */
  flags?: readonly string[];
  timeoutMs?: number;
}

/** `runsc run --detach` of a sub-container: create and start in one runsc call. */
export interface RunOptions {
  bundle: string;
  /** A terminal's console goes to this socket (the reaper listens on it). */
  consoleSocket?: string;
  /** Without a terminal, the container's stdio. */
  stdio?: RunscStdio;
  /** Extra global flags of this call (a pod's runsc flags, gvisor-flags.ts). */
  flags?: readonly string[];
  timeoutMs?: number;
}

export interface RestoreOptions {
  bundle: string;
  /** Directory holding the checkpoint image (checkpoint.img...). */
  imagePath: string;
  stdio?: RunscStdio;
  /** --network of the sandbox being restored. */
  network?: RunscNetwork;
  /** As StartOptions.netnsWorkaround: restoring the root container boots the sandbox in that netns. */
  netnsWorkaround?: string;
  timeoutMs?: number;
}

export interface ExecOptions {
  /** A file holding the OCI process spec. */
  processFile: string;
  /** The exec'd process's pid inside the sandbox, for `kill --pid`. */
  internalPidFile?: string;
  /** Extra global flags of this call (a pod's runsc flags, gvisor-flags.ts). */
  flags?: readonly string[];
}

/** Grace period runsc gets after SIGTERM before execa sends SIGKILL. */
const FORCE_KILL_AFTER_MS = 2000;

/** Lines runsc writes when a container or sandbox is not there (checked against runsc 20240729). */
const NOT_FOUND_PATTERNS = [/file does not exist/, /container .* not found/i, /no such container/i];
const NOT_RUNNING_PATTERNS = [/sandbox is not running/i, /is not running/i, /connecting to control server.*(connection refused|no such file)/i, /container .* is stopped/i, /cannot signal (a )?stopped container/i];

function classify(stderr: string): RunscErrorKind {
  if (NOT_FOUND_PATTERNS.some((p) => p.test(stderr))) return 'not-found';
  if (NOT_RUNNING_PATTERNS.some((p) => p.test(stderr))) return 'not-running';
  return 'other';
}

/** Keeps error messages one readable line: runsc's last non-empty stderr lines, bounded. */
function trimStderr(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.slice(-3).join(' | ').slice(0, 2000);
}

export class Runsc {
  readonly options: Readonly<RunscOptions>;
  private seq = 0;

  constructor(options: RunscOptions) {
    this.options = { ...options };
  }

  /** Global flags, in the order runsc documents them; `network` overrides the default; `extra` (per call) come last. */
  globalFlags(network?: RunscNetwork, extra: readonly string[] = []): string[] {
    const o = this.options;
    const flags = [`--root=${o.root}`];
    if (o.platform) flags.push(`--platform=${o.platform}`);
    if (o.overlay2) flags.push(`--overlay2=${o.overlay2}`);
    const net = network ?? o.network;
    if (net) flags.push(`--network=${net}`);
    if (o.debugLog) flags.push(`--debug-log=${o.debugLog}`);
    if (o.ociSeccomp) flags.push('--oci-seccomp');
    flags.push(...(o.extraFlags ?? []), ...extra);
    return flags;
  }

  async create(id: string, opts: CreateOptions): Promise<void> {
    const args = ['create', `--bundle=${opts.bundle}`];
    if (opts.pidFile) args.push(`--pid-file=${opts.pidFile}`);
    args.push(id);
    const flags = [...(opts.sandbox && this.options.podInitConfig ? [`--pod-init-config=${this.options.podInitConfig}`] : []), ...(opts.flags ?? [])];
    await this.run('create', id, args, { stdio: withNullStdio(opts.stdio), network: opts.network, flags, timeoutMs: opts.timeoutMs });
  }

  async start(id: string, opts: StartOptions = {}): Promise<void> {
    await this.run('start', id, ['start', id], { stdio: withNullStdio(opts.stdio), network: opts.network, flags: opts.flags, netnsWorkaround: opts.netnsWorkaround, timeoutMs: opts.timeoutMs });
  }

  /**
   * Creates and starts a sub-container in one runsc process, returning once
   * it runs: half the start-ups of `create` then `start`. On failure runsc
   * destroys what it made.
   */
  async runDetached(id: string, opts: RunOptions): Promise<void> {
    const args = ['run', '--detach', `--bundle=${opts.bundle}`];
    if (opts.consoleSocket) args.push(`--console-socket=${opts.consoleSocket}`);
    args.push(id);
    await this.run('run', id, args, { stdio: withNullStdio(opts.stdio), flags: opts.flags, timeoutMs: opts.timeoutMs });
  }

  async state(id: string): Promise<RunscState> {
    const { stdout } = await this.run('state', id, ['state', id]);
    return parseJson<RunscState>(stdout, 'state', id);
  }

  /**
   * Whether runsc holds state for the container, read from --root instead of
   * asking runsc (each call of it costs a start-up of ~20 ms): runsc keeps a
   * "<id>_sandbox:<sandbox id>.state" file per container from create until
   * delete, and without it state, kill and delete all answer "does not exist".
   * Any file naming the id counts, so that a runsc with another layout gets
   * its delete rather than leaving state behind.
   */
  async hasState(id: string): Promise<boolean> {
    let names: string[];
    try {
      names = await readdir(this.options.root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    return names.some((n) => n.includes(id));
  }

  async list(): Promise<RunscListEntry[]> {
    const { stdout } = await this.run('list', '', ['list', '--format=json']);
    return parseJson<RunscListEntry[] | null>(stdout, 'list', '') ?? [];
  }

  /** Signals the container's init (or every process with `all`, or one sandbox pid with `pid`). */
  async kill(id: string, signal: string, opts: { all?: boolean; pid?: number } = {}): Promise<void> {
    const args = ['kill'];
    if (opts.all) args.push('--all');
    if (opts.pid !== undefined) args.push(`--pid=${opts.pid}`);
    args.push(id, signal);
    await this.run('kill', id, args);
  }

  /** Deletes containers; with `force` running ones are killed first. */
  async delete(ids: readonly string[], opts: { force?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const args = ['delete'];
    if (opts.force) args.push('--force');
    args.push(...ids);
    await this.run('delete', ids.join(','), args, { timeoutMs: opts.timeoutMs });
  }

  /**
   * Blocks until the container's init exits and returns its status (128+N
   * for a signal). Has no timeout of its own: cancel it with `signal`.
   */
  async wait(id: string, opts: { signal?: AbortSignal } = {}): Promise<number> {
    const { stdout } = await this.run('wait', id, ['wait', id], { timeoutMs: 0, cancelSignal: opts.signal });
    const out = parseJson<{ exitStatus: number }>(stdout, 'wait', id);
    return out.exitStatus;
  }

  /**
   * Starts an attached `runsc exec` of `opts.processFile`, which lives as
   * long as the exec'd process and exits with its code, with the stdio the
   * caller wants streamed (exec-process.ts: through the reaper when it runs,
   * over FIFOs at `fifoBase`.in/.out/.err). The caller owns the process and
   * disposes of it. (No detached variant: `exec --detach --process` fails in
   * runsc 20240729 with "a container-id is required".)
   */
  spawnExec(id: string, opts: ExecOptions, want: ExecStdio, fifoBase: string): Promise<ExecProcess> {
    return startExec({ binary: this.options.binary, args: this.execArgs(id, opts), want, fifoBase, reaper: this.options.reaper });
  }

  /**
   * As spawnExec, for a process with a terminal: runsc exec runs on a
   * pseudo-terminal the reaper makes and relays (exec-process.ts, FIFOs at
   * `fifoBase`). Undefined without a reaper: the caller then makes the
   * terminal itself.
   */
  async spawnTerminalExec(id: string, opts: ExecOptions, fifoBase: string, size: { cols: number; rows: number }): Promise<TerminalExecProcess | undefined> {
    const args = this.execArgs(id, opts);
    const { reaper, binary } = this.options;
    if (!reaperCanRun(reaper, binary, args, fifoBase)) return undefined;
    return startTerminalExec({ binary, args, fifoBase, reaper, size });
  }

  /** The whole argv (global flags included) of an attached `runsc exec` of `opts.processFile`. */
  execArgs(id: string, opts: ExecOptions): string[] {
    const args = [...this.globalFlags(undefined, opts.flags), 'exec', `--process=${opts.processFile}`];
    if (opts.internalPidFile) args.push(`--internal-pid-file=${opts.internalPidFile}`);
    args.push(id);
    return args;
  }

  /** One-shot usage statistics of a container. */
  async stats(id: string): Promise<RunscStats> {
    const { stdout } = await this.run('events', id, ['events', '--stats', id]);
    return parseJson<RunscStats>(stdout, 'events --stats', id);
  }

  async ps(id: string): Promise<RunscProcess[]> {
    const { stdout } = await this.run('ps', id, ['ps', '--format=json', id]);
    return parseJson<RunscProcess[] | null>(stdout, 'ps', id) ?? [];
  }

  /**
   * Spawns `runsc port-forward --stream SOCKET ID PORT`: runsc connects to
   * the unix socket and relays that one connection to PORT inside the sandbox.
   */
  spawnPortForward(id: string, port: number, socketPath: string, cancelSignal?: AbortSignal): ResultPromise<{ reject: false }> {
    return execa(this.options.binary, [...this.globalFlags(), 'port-forward', `--stream=${socketPath}`, id, String(port)], {
      reject: false,
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
      cancelSignal,
    }) as unknown as ResultPromise<{ reject: false }>;
  }

  /**
   * Saves the state of the whole sandbox `id` belongs to into `imagePath`
   * (a directory runsc fills: checkpoint.img, pages). With `leaveRunning` the
   * sandbox resumes afterwards; without it, it is destroyed.
   */
  async checkpoint(id: string, imagePath: string, opts: { leaveRunning?: boolean; timeoutMs: number }): Promise<void> {
    const args = ['checkpoint', `--image-path=${imagePath}`];
    if (opts.leaveRunning) args.push('--leave-running');
    args.push(id);
    await this.run('checkpoint', id, args, { timeoutMs: opts.timeoutMs });
  }

  /**
   * `runsc restore --detach` of one container from a checkpoint image. The
   * root container's restore boots the sandbox (its stdio, as with create);
   * each sub-container's restore hands it its stdio, as start does. The
   * sandbox resumes once every container the checkpoint holds is restored.
   */
  async restore(id: string, opts: RestoreOptions): Promise<void> {
    const args = ['restore', '--detach', `--bundle=${opts.bundle}`, `--image-path=${opts.imagePath}`, id];
    await this.run('restore', id, args, { stdio: withNullStdio(opts.stdio), network: opts.network, netnsWorkaround: opts.netnsWorkaround, timeoutMs: opts.timeoutMs });
  }

  /** `runsc trace list`: the sandbox's trace sessions (runsc prints text, parsed in trace-session.ts). */
  async traceList(id: string): Promise<string> {
    return (await this.run('trace list', id, ['trace', 'list', id])).stdout;
  }

  /** `runsc --version` (no root needed). */
  async version(): Promise<string> {
    return (await this.runBare('--version', ['--version'])).stdout;
  }

  /** `runsc help` (subcommand list) or `runsc flags`. */
  async help(topic: 'help' | 'flags'): Promise<string> {
    const r = await this.runBare(topic, [topic]);
    return `${r.stdout}\n${r.stderr}`;
  }

  private async runBare(subcommand: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
    const r = await execa(this.options.binary, args, { reject: false, timeout: this.options.timeoutMs ?? 30_000, stdin: 'ignore' });
    if (r.failed && r.exitCode !== 0 && r.exitCode !== 128) throw new RunscError('other', subcommand, '', trimStderr(r.stderr || (r.shortMessage ?? '')));
    return { stdout: r.stdout, stderr: r.stderr };
  }

  private async run(
    subcommand: string,
    id: string,
    args: string[],
    opts: { stdio?: RunscStdio; network?: RunscNetwork; flags?: readonly string[]; timeoutMs?: number; cancelSignal?: AbortSignal; netnsWorkaround?: string } = {},
  ): Promise<{ stdout: string; stderr: string }> {
    // With the container's stdio on runsc's stderr, runsc's own error text
    // would land in the container's log: ask for it in a file (--log holds
    // only the error line when --debug is off) and read it back.
    // create (and restore) leaves the sandbox and gofers behind, and a sub-container's start (or run) its gofer: all through the reaper.
    const reaper = (subcommand === 'create' || subcommand === 'start' || subcommand === 'run' || subcommand === 'restore') && this.options.reaper?.running ? this.options.reaper : undefined;
    // The reaper's children get no pipe back, so their error text always comes through --log.
    const redirected = reaper !== undefined || opts.stdio?.stderr !== undefined || opts.stdio?.stdout !== undefined;
    const errLog = redirected ? join(dirname(this.options.root), 'runsc-errors', `${id}.${subcommand}.${process.pid}.${++this.seq}.log`) : undefined;
    // The error log is a small local file: direct calls, where the threadpool cost a round trip between threads for each step of every call.
    if (errLog) mkdirSync(dirname(errLog), { recursive: true });
    const full = [...this.globalFlags(opts.network, opts.flags), ...(errLog ? [`--log=${errLog}`] : []), ...args];
    let file = this.options.binary;
    let argv = full;
    if (opts.netnsWorkaround && !reaper) {
      // The reaper sets the workaround up in its child itself; without it, by hand.
      // One mount namespace for both steps: the tmpfs must cover the pod
      // netns's /proc/sys/net/core only for this runsc call.
      file = 'unshare';
      argv = ['-m', '--propagation', 'private', 'sh', '-c', 'nsenter --net="$1" mount -t tmpfs none /proc/sys/net/core && shift && exec "$@"', 'sh', opts.netnsWorkaround, this.options.binary, ...full];
    }
    const timeoutMs = opts.timeoutMs ?? this.options.timeoutMs ?? 60_000;
    const started = performance.now();
    const launcher = !reaper && opts.stdio === undefined && file === this.options.binary && this.options.launcher?.available ? this.options.launcher : undefined;
    const r = reaper
      ? await launchThrough(reaper, [file, ...argv], opts.stdio, timeoutMs, opts.netnsWorkaround)
      : launcher
        ? await captureThrough(launcher, file, argv, timeoutMs, opts.cancelSignal)
        : await execa(file, argv, {
          reject: false,
          stdin: fdOption(opts.stdio?.stdin ?? 'ignore') as Options['stdin'],
          stdout: fdOption(opts.stdio?.stdout ?? 'pipe'),
          stderr: fdOption(opts.stdio?.stderr ?? 'pipe'),
          timeout: timeoutMs > 0 ? timeoutMs : undefined,
          forceKillAfterDelay: FORCE_KILL_AFTER_MS,
          cancelSignal: opts.cancelSignal,
          maxBuffer: 16 * 1024 * 1024,
        });
    const stdout = typeof r.stdout === 'string' ? r.stdout : '';
    this.options.onCommand?.(subcommand, performance.now() - started, !r.timedOut && !r.isCanceled && (r.exitCode === 0 || (subcommand === 'wait' && stdout.trim() !== '')));
    let stderr = typeof r.stderr === 'string' ? r.stderr : '';
    if (errLog) {
      stderr = `${stderr}\n${readErrorLog(errLog)}`;
      rmSync(errLog, { force: true });
    }
    if (r.timedOut) throw new RunscError('timeout', subcommand, id, `timed out after ${timeoutMs} ms${stderr ? `: ${trimStderr(stderr)}` : ''}`);
    if (r.isCanceled) throw new RunscError('cancelled', subcommand, id, 'cancelled');
    if (r.exitCode !== 0 && subcommand !== 'wait') {
      const detail = trimStderr(stderr) || trimStderr(stdout) || (r.shortMessage ?? `exit code ${r.exitCode}`);
      throw new RunscError(classify(detail), subcommand, id, detail);
    }
    if (subcommand === 'wait' && stdout.trim() === '') {
      // wait exits with the container's status; only a JSON-less answer is a failure.
      const detail = trimStderr(stderr) || (r.shortMessage ?? `exit code ${r.exitCode}`);
      throw new RunscError(classify(detail), subcommand, id, detail);
    }
    return { stdout, stderr };
  }
}

/**
 * create (root container) and start or run (sub-container) hand runsc's own stdio
 * to the container: left as pipes, the sandbox would hold them open and the
 * call would never finish. Unset streams are /dev/null.
 */
function withNullStdio(stdio: RunscStdio | undefined): RunscStdio {
  return { stdin: stdio?.stdin ?? 'ignore', stdout: stdio?.stdout ?? 'ignore', stderr: stdio?.stderr ?? 'ignore' };
}

/** What run() reads of a finished call, whichever way it was launched. */
interface CallOutcome {
  stdout?: unknown;
  stderr?: unknown;
  exitCode?: number;
  timedOut: boolean;
  isCanceled: boolean;
  shortMessage?: string;
}

/** Runs a call through the reaper; a daemon fd reaches it as a /proc path it reopens. */
async function launchThrough(reaper: Reaper, argv: string[], stdio: RunscStdio | undefined, timeoutMs: number, maskNetCoreIn: string | undefined): Promise<CallOutcome> {
  const path = (v: number | 'pipe' | 'ignore' | undefined): string => (typeof v === 'number' ? `/proc/${process.pid}/fd/${v}` : '/dev/null');
  const r = await reaper.launch(argv, { stdin: path(stdio?.stdin), stdout: path(stdio?.stdout), stderr: path(stdio?.stderr) }, { timeoutMs, maskNetCoreIn });
  const shortMessage = r.exitCode === undefined
    ? (r.signal ? `killed by signal ${r.signal}` : 'the reaper is gone')
    : maskNetCoreIn !== undefined && r.exitCode === MASK_FAILED_EXIT
      ? `could not mask /proc/sys/net/core of netns ${maskNetCoreIn} (private mount namespace, setns or tmpfs mount failed)`
      : undefined;
  return { exitCode: r.exitCode, timedOut: r.timedOut, isCanceled: false, shortMessage };
}

/** Runs a call whose output is read back through the launcher (no daemon fork). */
async function captureThrough(launcher: Launcher, file: string, argv: string[], timeoutMs: number, signal: AbortSignal | undefined): Promise<CallOutcome> {
  const r = await launcher.run({ file, args: argv, timeoutMs, signal });
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode, timedOut: r.timedOut, isCanceled: r.cancelled, shortMessage: r.notRun ?? (r.exitCode === undefined ? 'killed' : undefined) };
}

/**
 * A host fd (or 'pipe'/'ignore') as an execa stdio option. execa hands a
 * single integer straight to child_process.spawn; its types only lack it.
 */
function fdOption(v: number | 'pipe' | 'ignore'): Options['stdout'] {
  return v as Options['stdout'];
}

/** The "msg" of each JSON line runsc's --log received. */
function readErrorLog(path: string): string {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    // None when runsc ended before opening it: its exit status says enough.
  }
  const msgs: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const entry = JSON.parse(line) as { msg?: unknown; level?: unknown };
      if (entry.level === 'error' && typeof entry.msg === 'string') msgs.push(entry.msg);
    } catch {
      msgs.push(line);
    }
  }
  return msgs.join('\n');
}

function parseJson<T>(text: string, subcommand: string, id: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new RunscError('other', subcommand, id, `unexpected output: ${text.slice(0, 200)}`);
  }
}
