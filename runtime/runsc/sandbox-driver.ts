/**
 * Runs pods as runsc sandboxes: the infra container boots the sandbox, app
 * containers join it. Knows runsc's quirks (gvisor.md), nothing of CRI.
 */
import { close as closeCb, open as openCb } from 'node:fs';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { sideBySide } from '../../common/index.js';
import type { Logger } from '../../cri-api/logger.js';
import type { OutputFifo, StdinFifo } from '../logs/log-pipe.js';
import type { OciProcess, OciSpec } from '../spec/oci-spec.js';
import { ANNOTATION_SANDBOX_ID, writeBundle } from '../spec/oci-spec.js';
import { flagAnnotations, runscCallFlags } from './gvisor-flags.js';
import { killExec } from './exec-kill.js';
import type { ExecProcess } from './exec-process.js';
import { isGone, RunscError, type Runsc, type RunscNetwork, type RunscState } from './runsc.js';
import { SandboxControl, WaitUnanswered } from './sandbox-control.js';

const openFd = promisify(openCb) as (path: string, flags: string) => Promise<number>;
const closeFd = promisify(closeCb);

export interface CreateSandboxInput {
  id: string;
  bundleDir: string;
  spec: OciSpec;
  networkMode: RunscNetwork;
  /** The pod's netns (also named in the spec); needed for the workaround. */
  netnsPath?: string;
  /** From runsc-features: runsc mistakes every netns for the root one on this kernel. */
  needsNetnsWorkaround: boolean;
  /** File receiving the infra process's and the sandbox boot's stdout/stderr; /dev/null if absent. */
  logPath?: string;
  /** The pod's allowed runsc flags (gvisor-flags.ts). */
  runscFlags?: Record<string, string>;
}

/** How a container's stdio is connected. */
export type ContainerIo =
  | { kind: 'fifo'; stdout: OutputFifo; stderr: OutputFifo; stdin?: StdinFifo }
  /** A terminal: the reaper receives the console from runsc and relays it (reaper.ts TerminalFiles). */
  | { kind: 'tty'; stdout: OutputFifo; stdin?: StdinFifo; control: string };

export type TerminalIo = Extract<ContainerIo, { kind: 'tty' }>;

export interface PrepareContainerInput {
  id: string;
  sandboxId: string;
  bundleDir: string;
  spec: OciSpec;
  /** A terminal's ends: the reaper takes them and listens for its console from now on. */
  terminal?: TerminalIo;
  /** The pod's allowed runsc flags: every container of the pod carries them (runsc applies them per container). */
  runscFlags?: Record<string, string>;
}

export interface StartContainerInput {
  id: string;
  /** The bundle prepareContainer wrote. */
  bundleDir: string;
  /** FIFOs are handed to runsc as the container's stdio; a terminal's ends went to the reaper at prepare. */
  io: ContainerIo;
  runscFlags?: Record<string, string>;
}

/** A pod sandbox to be brought back from a checkpoint in place of its cold-booted one. */
export interface RestoreSandboxInput {
  id: string;
  /** The pod's infra bundle, already written by createSandbox. */
  bundleDir: string;
  networkMode: RunscNetwork;
  netnsPath?: string;
  needsNetnsWorkaround: boolean;
  logPath?: string;
  /** The runsc checkpoint image directory. */
  imageDir: string;
  /** Every app container the checkpoint holds, under its new id. */
  containers: { id: string; bundleDir: string; spec: OciSpec; io: Extract<ContainerIo, { kind: 'fifo' }> }[];
  timeoutMs: number;
}

export interface ExecSyncResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
  /** Killed because the call's signal aborted. */
  cancelled?: boolean;
}

/**
 * Waits up to `ms` for a container's exit that the caller learns its own way
 * (the daemon's exit waiter): true once it exited, false at `ms`, undefined
 * when it cannot tell; rejects with the reason of `signal` if that aborts.
 */
export type ExitWait = (ms: number, signal?: AbortSignal) => Promise<boolean | undefined>;

/** Cap on each stream ExecSync returns (kubelet's own limit is 16 MiB). */
export const EXEC_SYNC_MAX_BYTES = 16 * 1024 * 1024;

/** How long a stopped sandbox's process may take to disappear before teardown gives up waiting. */
const SANDBOX_EXIT_WAIT_MS = 10_000;

export class SandboxDriver {
  private readonly runsc: Runsc;
  private readonly logger: Logger;
  private readonly control: SandboxControl;
  private execSeq = 0;

  constructor(runsc: Runsc, logger: Logger) {
    this.runsc = runsc;
    this.logger = logger;
    this.control = new SandboxControl(runsc.options.root);
  }

  /** Writes the bundle, then `runsc create` + `start` of the infra container. Returns the sandbox pid. */
  async createSandbox(input: CreateSandboxInput): Promise<number> {
    await this.prepareSandbox(input);
    return this.startSandbox(input);
  }

  /**
   * Writes the bundle and `runsc create`s the infra container: the sandbox
   * process boots in the spec's netns but takes its interfaces only at
   * `startSandbox`, so CNI ADD may run meanwhile (gvisor.md "Network").
   */
  async prepareSandbox(input: CreateSandboxInput): Promise<void> {
    const { id } = input;
    await writeBundle(input.bundleDir, withFlags(input.spec, input.runscFlags));
    const out = await openFd(input.logPath ?? '/dev/null', input.logPath ? 'a' : 'r+');
    const devNull = await openFd('/dev/null', 'r');
    try {
      await this.runsc.create(id, {
        bundle: input.bundleDir,
        pidFile: sandboxPidFile(input.bundleDir),
        stdio: { stdin: devNull, stdout: out, stderr: out },
        network: input.networkMode,
        sandbox: true,
        flags: runscCallFlags(input.runscFlags, 'spec'),
      });
    } finally {
      await closeFd(out);
      await closeFd(devNull);
    }
  }

  /** `runsc start` of the infra container `prepareSandbox` created (it copies the netns's interfaces now). Returns the sandbox pid. */
  async startSandbox(input: CreateSandboxInput): Promise<number> {
    const { id } = input;
    const flags = runscCallFlags(input.runscFlags, 'spec');
    const workaround = input.needsNetnsWorkaround && input.networkMode === 'sandbox' && input.netnsPath !== undefined ? input.netnsPath : undefined;
    try {
      await this.runsc.start(id, { network: input.networkMode, flags, netnsWorkaround: workaround });
    } catch (err) {
      await this.runsc.delete([id], { force: true }).catch((e: unknown) => this.logger.warn({ err: e, sandbox: id }, 'cleaning up a sandbox that failed to start'));
      throw err;
    }
    // create wrote the sandbox process's pid there: one runsc call (`state`) fewer.
    const pid = Number.parseInt(await readFile(sandboxPidFile(input.bundleDir), 'utf8'), 10);
    if (!(pid > 0)) throw new RunscError('other', 'start', id, `no sandbox pid in ${sandboxPidFile(input.bundleDir)}`);
    this.logger.debug({ sandbox: id, pid }, 'sandbox started');
    return pid;
  }

  /**
   * Writes an app container's bundle; a terminal's console socket starts
   * listening in the reaper. runsc hears of the container only at
   * startContainer (as containerd makes the task at StartContainer), which
   * creates and starts it in one call.
   */
  async prepareContainer(input: PrepareContainerInput): Promise<void> {
    if (input.spec.annotations[ANNOTATION_SANDBOX_ID] !== input.sandboxId) {
      throw new RunscError('other', 'create', input.id, `spec does not name sandbox ${input.sandboxId} in ${ANNOTATION_SANDBOX_ID}`);
    }
    await writeBundle(input.bundleDir, withFlags(input.spec, input.runscFlags));
    const io = input.terminal;
    if (!io) return;
    const reaper = this.runsc.options.reaper;
    if (!reaper?.running) throw new RunscError('other', 'create', input.id, 'a terminal needs the runsc reaper, which is not running');
    await reaper.openTerminal(input.id, { consoleSocket: await this.consoleSocketPath(input.id), stdout: io.stdout.path, stdin: io.stdin?.path, control: io.control });
    // The reaper holds the terminal and its own ends of the FIFOs now.
    await io.stdout.releaseWriter();
    await io.stdin?.releaseContainerEnd();
  }

  /**
   * `runsc run --detach` of a prepared app container, with its FIFOs as
   * stdio or its terminal's console sent to the reaper. `runscFlags` are
   * the pod's: runsc reads the spec and needs the same permission.
   */
  async startContainer(input: StartContainerInput): Promise<void> {
    const { id, io } = input;
    await this.runsc.runDetached(id, {
      bundle: input.bundleDir,
      flags: runscCallFlags(input.runscFlags, 'spec'),
      ...(io.kind === 'tty' ? { consoleSocket: await this.consoleSocketPath(id) } : { stdio: { stdin: io.stdin?.containerFd, stdout: io.stdout.writerFd, stderr: io.stderr.writerFd } }),
    });
    if (io.kind === 'fifo') {
      // The sandbox holds its own copies now.
      await io.stdout.releaseWriter();
      await io.stderr.releaseWriter();
      await io.stdin?.releaseContainerEnd();
    }
  }

  /** Has the reaper keep these output FIFOs' contents alive while no daemon reads them (reaper.ts holdFifos). */
  holdOutput(paths: readonly string[]): void {
    this.runsc.options.reaper?.holdFifos(paths);
  }

  /** Whether containers can get a terminal: the reaper receives and holds consoles. */
  get terminalsSupported(): boolean {
    return this.runsc.options.reaper?.running === true;
  }

  /** Short (unix socket paths end at 108 bytes) and private. */
  private async consoleSocketPath(id: string): Promise<string> {
    const dir = join(dirname(this.runsc.options.root), 'console');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return join(dir, `${id.slice(0, 16)}.sock`);
  }

  /**
   * Checkpoints the whole sandbox (runsc saves every container of it) into
   * `imageDir`, leaving it running.
   */
  async checkpointSandbox(id: string, imageDir: string, timeoutMs: number): Promise<void> {
    await this.runsc.checkpoint(id, imageDir, { leaveRunning: true, timeoutMs });
  }

  /**
   * Replaces the pod's running sandbox with one restored from a checkpoint,
   * under the same sandbox id (same bundle, same netns): the cold-booted
   * sandbox is removed, then `runsc restore` of the root container boots the
   * sandbox and one `runsc restore` per app container hands each its stdio;
   * runsc resumes the processes once the last one is in. On failure whatever
   * was restored is removed again and the pod has no sandbox: the caller
   * boots a fresh one. Returns the new sandbox pid.
   */
  async restoreSandbox(input: RestoreSandboxInput): Promise<number> {
    const { id } = input;
    await this.stopSandbox(id, []);
    const workaround = input.needsNetnsWorkaround && input.networkMode === 'sandbox' && input.netnsPath !== undefined ? input.netnsPath : undefined;
    const deadline = Date.now() + input.timeoutMs;
    const left = (): number => {
      const ms = deadline - Date.now();
      if (ms <= 0) throw new RunscError('timeout', 'restore', id, `timed out after ${input.timeoutMs} ms`);
      return ms;
    };
    try {
      const out = await openFd(input.logPath ?? '/dev/null', input.logPath ? 'a' : 'r+');
      try {
        await this.runsc.restore(id, { bundle: input.bundleDir, imagePath: input.imageDir, stdio: { stdout: out, stderr: out }, network: input.networkMode, netnsWorkaround: workaround, timeoutMs: left() });
      } finally {
        await closeFd(out);
      }
      for (const c of input.containers) {
        await writeBundle(c.bundleDir, c.spec);
        await this.runsc.restore(c.id, { bundle: c.bundleDir, imagePath: input.imageDir, stdio: { stdin: c.io.stdin?.containerFd, stdout: c.io.stdout.writerFd, stderr: c.io.stderr.writerFd }, timeoutMs: left() });
        await c.io.stdout.releaseWriter();
        await c.io.stderr.releaseWriter();
        await c.io.stdin?.releaseContainerEnd();
      }
    } catch (err) {
      await this.stopSandbox(id, input.containers.map((c) => c.id)).catch((e: unknown) => this.logger.error({ err: e, sandbox: id }, 'removing a half-restored sandbox failed'));
      throw err;
    }
    const state = await this.runsc.state(id);
    this.logger.debug({ sandbox: id, pid: state.pid }, 'sandbox restored from a checkpoint');
    return state.pid;
  }

  /** App containers runsc knows in the sandbox, running or exited (ids). */
  async appContainersOf(sandboxId: string): Promise<string[]> {
    return this.containersOf(sandboxId);
  }

  /**
   * Blocks until the container's first process ends (answers at once if it
   * has) and gives its exit status (128+N for signal N), asked of its
   * sandbox (sandbox-control.ts); through `runsc wait` when the sandbox
   * cannot be asked that way.
   */
  async waitContainer(id: string, sandboxId: string, signal?: AbortSignal): Promise<number> {
    try {
      return await this.control.wait(sandboxId, id, signal);
    } catch (err) {
      if (!(err instanceof WaitUnanswered)) throw err;
      this.logger.debug({ err, container: id }, 'the sandbox was not asked directly; waiting through runsc wait');
      return this.runsc.wait(id, { signal });
    }
  }

  async state(id: string): Promise<RunscState> {
    return this.runsc.state(id);
  }

  /**
   * Sends `stopSignal`, waits up to `timeoutSec`, then SIGKILLs every process
   * of the container. A vanished or never started container (runsc holds
   * none before startContainer) or sandbox counts as stopped. When `signal`
   * aborts during the grace period the wait ends with its reason and no
   * SIGKILL follows (as containerd: the stop signal was sent, a retried
   * StopContainer escalates). `exited`, when given, is how the caller
   * already learns the container's exit; without it (or when it cannot
   * tell) a `runsc wait` waits here.
   */
  async stopContainer(id: string, timeoutSec: number, stopSignal = 'SIGTERM', signal?: AbortSignal, exited?: ExitWait): Promise<void> {
    // Signalled straight away: asking `runsc state` first would cost a runsc
    // start-up on every stop. Only a refused signal is looked into.
    try {
      await (timeoutSec > 0 ? this.runsc.kill(id, stopSignal) : this.runsc.kill(id, 'SIGKILL', { all: true }));
    } catch (err) {
      if (isGone(err)) return;
      const status = await this.runsc.state(id).then(
        (st) => st.status,
        (e: unknown) => {
          if (isGone(e)) return 'gone';
          throw e;
        },
      );
      if (status === 'gone' || status === 'stopped') return;
      throw err;
    }
    try {
      if (timeoutSec > 0) {
        if (await this.waitFor(id, timeoutSec * 1000, signal, exited)) return;
        this.logger.info({ container: id, timeoutSec, stopSignal }, 'container outlived its stop timeout; sending SIGKILL');
        await this.runsc.kill(id, 'SIGKILL', { all: true });
      }
      await this.waitFor(id, SANDBOX_EXIT_WAIT_MS, undefined, exited);
    } catch (err) {
      if (!isGone(err)) throw err;
    }
  }

  /** Deletes an app container's runsc state (killing it if still running); no runsc call when none is left. */
  async removeContainer(id: string): Promise<void> {
    // Normally gone already (its container exited); a never-started one still holds it.
    this.runsc.options.reaper?.closeTerminal(id);
    if (!(await this.runsc.hasState(id))) return;
    try {
      await this.runsc.delete([id], { force: true });
    } catch (err) {
      if (!isGone(err)) throw err;
    }
  }

  /**
   * Stops the whole pod at once: SIGKILL of the sandbox process ends every
   * container in it, then all runsc states are deleted in parallel.
   * (Deleting each container while its sandbox runs costs one gofer reap
   * per container; this costs one, see the report's timings.)
   * `containerIds` are the pod's app containers; found with `runsc list`
   * when not given. `pid` is the sandbox process as the caller knows it:
   * when /proc shows it is still this sandbox's, no `runsc state` is asked.
   */
  async stopSandbox(id: string, containerIds?: readonly string[], pid?: number): Promise<void> {
    const apps = containerIds ?? (await this.containersOf(id));
    const live = await this.liveSandboxPid(id, pid);
    if (live !== undefined) {
      try {
        process.kill(live, 'SIGKILL');
      } catch {
        // Already gone.
      }
      await waitProcessGone(live, SANDBOX_EXIT_WAIT_MS);
    }
    // While the dead sandbox's pid still exists, runsc tries its control
    // socket and fails; once it is gone every delete only removes state.
    await sideBySide([...apps, id].map((c) => this.removeContainer(c)));
  }

  /** Deletes the infra container's state if anything is left. */
  async removeSandbox(id: string, containerIds?: readonly string[]): Promise<void> {
    await this.stopSandbox(id, containerIds);
  }

  /**
   * The pid of the sandbox's running process, if any: `known` when /proc
   * shows it is this sandbox's runsc-sandbox (a reused pid is not), else as
   * `runsc state` reports it; undefined when runsc holds no state for it.
   */
  private async liveSandboxPid(id: string, known: number | undefined): Promise<number | undefined> {
    if (!(await this.runsc.hasState(id))) return undefined;
    if (known !== undefined && known > 0 && (await isSandboxProcess(known, id, this.runsc.options.root))) return known;
    try {
      const st = await this.runsc.state(id);
      return st.status === 'stopped' || !(st.pid > 0) ? undefined : st.pid;
    } catch (err) {
      if (isGone(err)) return undefined;
      throw err;
    }
  }

  /**
   * Runs a process in the container and collects its output. runsc does not
   * enforce a deadline, so at `timeoutMs` the process is SIGKILLed here, and
   * so it is when `signal` aborts (the caller went away or its deadline
   * passed). `runscFlags` are the pod's (gvisor-flags.ts).
   */
  async execSync(id: string, process: OciProcess, timeoutMs: number, runscFlags?: Record<string, string>, signal?: AbortSignal): Promise<ExecSyncResult> {
    const dir = join(dirname(this.runsc.options.root), 'exec');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const base = join(dir, `${id}-${globalThis.process.pid}-${++this.execSeq}`);
    const processFile = `${base}.json`;
    const internalPidFile = `${base}.pid`;
    await writeFile(processFile, JSON.stringify(process), { mode: 0o600 });
    let sub: ExecProcess | undefined;
    try {
      sub = await this.runsc.spawnExec(id, { processFile, internalPidFile, flags: runscCallFlags(runscFlags, 'exec') }, { stdin: false, stdout: true, stderr: true }, base);
      const stdout = collect(sub.stdout);
      const stderr = collect(sub.stderr);
      let timedOut = false;
      let cancelled = false;
      const killHost = sub.kill;
      const kill = (): void => void killExec(this.runsc, id, internalPidFile, killHost, this.logger);
      const timer = timeoutMs > 0 ? setTimeout(() => {
        timedOut = true;
        kill();
      }, timeoutMs) : undefined;
      const onAbort = (): void => {
        cancelled = true;
        kill();
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
      const result = await sub.exited;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      const [out, err] = await Promise.all([stdout, stderr]);
      if (cancelled) return { exitCode: 137, stdout: out, stderr: err, timedOut, cancelled };
      if (!timedOut && result.exitCode === undefined) {
        throw new RunscError('other', 'exec', id, result.failure ?? `runsc exec ended without a status${result.signal ? ` (${result.signal})` : ''}`);
      }
      // runsc exec itself fails with 128 when it cannot exec at all.
      if (!timedOut && result.exitCode === 128 && /loading|sandbox|container/i.test(err.toString())) {
        const detail = err.toString().trim().slice(-2000);
        throw new RunscError(/does not exist/.test(detail) ? 'not-found' : /not running/.test(detail) ? 'not-running' : 'other', 'exec', id, detail);
      }
      return { exitCode: timedOut ? 137 : result.exitCode ?? 1, stdout: out, stderr: err, timedOut };
    } finally {
      await sub?.dispose();
      await rm(processFile, { force: true });
      await rm(internalPidFile, { force: true });
    }
  }

  /**
   * Waits for the container's exit up to `ms`, through `exited` when it can
   * tell, else with `runsc wait`; true if it exited, the reason of
   * `callSignal` if that aborts first.
   */
  private async waitFor(id: string, ms: number, callSignal?: AbortSignal, exited?: ExitWait): Promise<boolean> {
    callSignal?.throwIfAborted();
    const seen = await exited?.(ms, callSignal);
    if (seen !== undefined) return seen;
    const timeout = AbortSignal.timeout(ms);
    try {
      await this.runsc.wait(id, { signal: callSignal ? AbortSignal.any([timeout, callSignal]) : timeout });
      return true;
    } catch (err) {
      if (err instanceof RunscError && err.kind === 'cancelled') {
        callSignal?.throwIfAborted();
        return false;
      }
      throw err;
    }
  }

  /** App containers of a sandbox, by the sandbox-id annotation runsc reports. */
  private async containersOf(sandboxId: string): Promise<string[]> {
    const all = await this.runsc.list();
    const out: string[] = [];
    for (const c of all) {
      if (c.id === sandboxId) continue;
      const st = await this.runsc.state(c.id).catch(() => undefined);
      if (st?.annotations?.[ANNOTATION_SANDBOX_ID] === sandboxId) out.push(c.id);
    }
    return out;
  }
}

/** Where `runsc create` of the infra container writes the sandbox process's pid. */
function sandboxPidFile(bundleDir: string): string {
  return join(bundleDir, 'sandbox.pid');
}

/** The spec with the pod's runsc flags as dev.gvisor.flag.* annotations. */
function withFlags(spec: OciSpec, runscFlags: Record<string, string> | undefined): OciSpec {
  if (!runscFlags || Object.keys(runscFlags).length === 0) return spec;
  return { ...spec, annotations: { ...spec.annotations, ...flagAnnotations(runscFlags) } };
}

/** Reads a stream to its end, keeping at most EXEC_SYNC_MAX_BYTES. */
async function collect(stream: NodeJS.ReadableStream | undefined): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    if (size >= EXEC_SYNC_MAX_BYTES) continue;
    const take = b.subarray(0, EXEC_SYNC_MAX_BYTES - size);
    parts.push(take);
    size += take.length;
  }
  return Buffer.concat(parts);
}

/** Whether `pid` is the runsc-sandbox process booting sandbox `id` under `root` (its command line says so). */
async function isSandboxProcess(pid: number, id: string, root: string): Promise<boolean> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  return argv[0] === 'runsc-sandbox' && argv.includes('boot') && argv.includes(`--root=${root}`) && argv.includes(id);
}

/** Polls /proc until `pid` is gone (reaped), up to `ms`. */
async function waitProcessGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      await access(`/proc/${pid}`);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
