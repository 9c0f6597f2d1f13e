/**
 * One attached `runsc exec` whose stdio the daemon streams. With the reaper
 * running it is the reaper's child and its stdio are FIFOs made beside the
 * exec's process file: node's spawn forks the daemon's whole address
 * space, which on this project's VMs held the event loop 6-7 ms per exec
 * (every ExecSync, streamed exec and port-forward relay), where the small
 * perl process forks in well under one. Without the reaper, execa with pipes.
 * An exec with a terminal runs on a pseudo-terminal the reaper makes and
 * relays, as it does a tty container's console (reaper.ts TerminalFiles).
 */
import { closeSync, constants as fsc, openSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Socket } from 'node:net';
import { constants as osc } from 'node:os';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { execa } from 'execa';
import { openFifoReader, openFifoWriter } from '../logs/log-pipe.js';
import { sendable, type LaunchResult, type Reaper } from './reaper.js';

/**
 * How long a terminal's output may go on after runsc exec exited. It ends
 * by itself once every end of the terminal is closed; a process left
 * running in the background that holds it would keep it open for good.
 */
const TERMINAL_DRAIN_MS = 2_000;

export interface ExecStdio {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface ExecExit {
  /** undefined when it died of a signal or never ran. */
  exitCode: number | undefined;
  signal: string | undefined;
  /** Why there is no status at all (the reaper went away, the spawn failed). */
  failure: string | undefined;
}

export interface ExecProcess {
  readonly stdin: Writable | undefined;
  readonly stdout: Readable | undefined;
  readonly stderr: Readable | undefined;
  /** Settles when runsc exec has exited; its output can still be draining then. */
  readonly exited: Promise<ExecExit>;
  /** SIGKILLs the host-side runsc exec (the process inside is killExec's job). */
  kill(): void;
  /** Removes what the exec left on disk (its FIFOs); after exit and drain. */
  dispose(): Promise<void>;
}

/** An attached `runsc exec` with a terminal: one output, input, a size. */
export interface TerminalExecProcess {
  /** What the terminal shows (the process's stdout and stderr alike); ends after the exit. */
  readonly output: Readable;
  /** Settles when runsc exec has exited; the output can still be draining then. */
  readonly exited: Promise<ExecExit>;
  /** Input typed into the terminal. */
  write(chunk: Buffer): void;
  /** The client's input ended: the terminal gets its end-of-input character. */
  endInput(): void;
  resize(cols: number, rows: number): void;
  /** SIGKILLs the host-side runsc exec (the process inside is killExec's job). */
  kill(): void;
  /** Drops the terminal and removes its FIFOs; after exit. */
  dispose(): Promise<void>;
}

export interface StartTerminalExecInput {
  binary: string;
  args: readonly string[];
  /** Path prefix of the terminal's FIFOs (`.out`, `.in`, `.ctl`). */
  fifoBase: string;
  reaper: Reaper;
  size: { cols: number; rows: number };
}

/** Whether the reaper can run this exec: it runs, and its line protocol can carry the command and FIFO paths. */
export function reaperCanRun(reaper: Reaper | undefined, binary: string, args: readonly string[], fifoBase: string): reaper is Reaper {
  return reaper?.running === true && sendable([binary, ...args, fifoBase]);
}

export interface StartExecInput {
  binary: string;
  args: readonly string[];
  want: ExecStdio;
  /** Path prefix of the FIFOs (`.in`, `.out`, `.err`) when the reaper runs the exec. */
  fifoBase: string;
  reaper: Reaper | undefined;
}

export async function startExec(input: StartExecInput): Promise<ExecProcess> {
  return reaperCanRun(input.reaper, input.binary, input.args, input.fifoBase) ? startThroughReaper(input, input.reaper) : startWithExeca(input);
}

function startWithExeca(input: StartExecInput): ExecProcess {
  const { want } = input;
  const sub = execa(input.binary, [...input.args], {
    reject: false,
    encoding: 'buffer',
    buffer: false,
    stdin: want.stdin ? 'pipe' : 'ignore',
    stdout: want.stdout ? 'pipe' : 'ignore',
    stderr: want.stderr ? 'pipe' : 'ignore',
  });
  return {
    stdin: sub.stdin ?? undefined,
    stdout: sub.stdout ?? undefined,
    stderr: sub.stderr ?? undefined,
    exited: sub.then((r) => ({ exitCode: r.exitCode, signal: r.signal, failure: r.exitCode === undefined && r.signal === undefined ? r.shortMessage : undefined })),
    kill: () => void sub.kill('SIGKILL'),
    dispose: async () => undefined,
  };
}

async function startThroughReaper(input: StartExecInput, reaper: Reaper): Promise<ExecProcess> {
  const { want, fifoBase } = input;
  const paths = { stdin: `${fifoBase}.in`, stdout: `${fifoBase}.out`, stderr: `${fifoBase}.err` };
  const used = (['stdin', 'stdout', 'stderr'] as const).filter((k) => want[k]);
  const dispose = async (): Promise<void> => {
    await Promise.all(used.map((k) => rm(paths[k], { force: true })));
  };
  // A writing end is held on each output FIFO until the exec exits (direct calls: opening a
  // FIFO O_RDWR never waits): a reader with no writer sees EOF at once, and the reaper's child
  // may not have opened its end yet.
  const held: number[] = [];
  const sockets: Socket[] = [];
  try {
    await Promise.all(used.map((k) => reaper.makeFifo(paths[k])));
    const reader = async (path: string): Promise<Socket> => {
      const s = await openFifoReader(path);
      sockets.push(s);
      held.push(openSync(path, fsc.O_RDWR));
      return s;
    };
    const stdout = want.stdout ? await reader(paths.stdout) : undefined;
    const stderr = want.stderr ? await reader(paths.stderr) : undefined;
    // The daemon's end of stdin is O_RDWR, so the pipe and what it holds live until the child has its
    // own end; closing it is the exec's EOF. Input waits in `stdin` until then: a client that sends
    // and closes at once must not close the FIFO before the child opened it.
    const fifoIn = want.stdin ? await openFifoWriter(paths.stdin) : undefined;
    if (fifoIn) sockets.push(fifoIn);
    // EPIPE when the process exits before reading all its input: not an error.
    fifoIn?.on('error', () => undefined);
    const stdin = fifoIn ? new PassThrough() : undefined;
    const killer = new AbortController();
    const exited = reaper
      .launch([input.binary, ...input.args], { stdin: want.stdin ? paths.stdin : '/dev/null', stdout: want.stdout ? paths.stdout : '/dev/null', stderr: want.stderr ? paths.stderr : '/dev/null' }, {
        timeoutMs: 0,
        signal: killer.signal,
        started: () => stdin?.pipe(fifoIn!),
      })
      .then((r) => {
        for (const fd of held.splice(0)) closeSync(fd);
        fifoIn?.destroy();
        return exitOf(r);
      });
    return { stdin, stdout, stderr, exited, kill: () => killer.abort(), dispose };
  } catch (err) {
    for (const fd of held) closeSync(fd);
    for (const s of sockets) s.destroy();
    await dispose();
    throw err;
  }
}

/**
 * runsc exec with a terminal in its process spec takes its own stdio as
 * the terminal (a console socket is only honoured with --detach, which
 * 20240729 refuses with --process). So the reaper makes a pseudo-terminal,
 * launches runsc exec on its slave, and relays the master between the
 * FIFOs: output, input, and control lines that resize it or end its input.
 * Once the reaper holds the output FIFO the daemon keeps no writing end of
 * it, so the daemon's reader ends when the reaper lets the terminal go.
 */
export async function startTerminalExec(input: StartTerminalExecInput): Promise<TerminalExecProcess> {
  const { fifoBase, reaper } = input;
  const paths = { output: `${fifoBase}.out`, input: `${fifoBase}.in`, control: `${fifoBase}.ctl` };
  const key = `exec-${basename(fifoBase)}`;
  const sockets: Socket[] = [];
  let held: number | undefined;
  const release = (): void => {
    if (held !== undefined) closeSync(held);
    held = undefined;
  };
  const dispose = async (): Promise<void> => {
    release();
    reaper.closeTerminal(key);
    for (const s of sockets) s.destroy();
    await Promise.all(Object.values(paths).map((p) => rm(p, { force: true })));
  };
  try {
    await Promise.all(Object.values(paths).map((p) => reaper.makeFifo(p)));
    // A reader with no writer sees EOF at once: a writing end is held until the reaper has its own.
    held = openSync(paths.output, fsc.O_RDWR);
    const output = await openFifoReader(paths.output);
    sockets.push(output);
    const fifoIn = await openFifoWriter(paths.input);
    const control = await openFifoWriter(paths.control);
    sockets.push(fifoIn, control);
    // A process that exits before reading all its input: EPIPE is not an error.
    fifoIn.on('error', () => undefined);
    control.on('error', () => undefined);
    const say = (line: string): void => void control.write(`${line}\n`);
    // Waits in the FIFO for the reaper: the size applies from the start.
    say(`R ${input.size.cols} ${input.size.rows}`);
    const tty = await reaper.openPty(key, { stdout: paths.output, stdin: paths.input, control: paths.control });
    release();
    const killer = new AbortController();
    const exited = reaper.launchOnTerminal([input.binary, ...input.args], tty, { timeoutMs: 0, signal: killer.signal }).then((r) => {
      if (!output.readableEnded && !output.destroyed) {
        const drain = setTimeout(() => reaper.closeTerminal(key), TERMINAL_DRAIN_MS);
        output.once('close', () => clearTimeout(drain));
      }
      return exitOf(r);
    });
    return {
      output,
      exited,
      write: (chunk) => void fifoIn.write(chunk),
      endInput: () => say('E'),
      resize: (cols, rows) => say(`R ${cols} ${rows}`),
      kill: () => killer.abort(),
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/** A reaper launch's result as an exec's exit. */
function exitOf(r: LaunchResult): ExecExit {
  return { exitCode: r.exitCode, signal: r.signal === undefined ? undefined : signalName(r.signal), failure: r.exitCode === undefined && r.signal === undefined ? 'the runsc reaper exited before runsc exec did' : undefined };
}

function signalName(n: number): string {
  return Object.entries(osc.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;
}
