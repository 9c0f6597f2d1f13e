/**
 * The daemon's ends of every created or running container's stdio: the
 * output FIFOs pumped into the CRI log, the stdin FIFO, a terminal's
 * control FIFO. Attach reads and writes through them too.
 */
import { constants as fsc } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { internal, wrapError } from '../../cri-api/errors.js';
import type { Logger } from '../../cri-api/logger.js';
import type { ContainerRecord } from '../records/store.js';
import type { Reaper } from '../runsc/reaper.js';
import type { ContainerIo, SandboxDriver } from '../runsc/sandbox-driver.js';
import { sideBySide } from '../../common/index.js';
import { CriLogWriter } from './cri-log.js';
import { makeAnyFifo, OutputFifo, StdinFifo } from './log-pipe.js';

/** How long an exited container's output may take to reach EOF before its log is closed anyway. */
const OUTPUT_DRAIN_MS = 2000;

/** A running (or created) container's stdio, held by the daemon. */
export interface LiveIo {
  stdout: OutputFifo;
  /** Absent with a terminal: it has one output. */
  stderr?: OutputFifo;
  stdin?: StdinFifo;
  /** The terminal's control FIFO (reaper.ts TerminalFiles). */
  control?: string;
  writer?: CriLogWriter;
  pumps: Promise<void>[];
}

export interface ContainerIoTableOptions {
  /** A container's FIFOs live in this directory. */
  containerDir: (id: string) => string;
  driver: SandboxDriver;
  reaper?: Reaper;
  logger: Logger;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class ContainerIoTable {
  private readonly live = new Map<string, LiveIo>();

  constructor(private readonly opts: ContainerIoTableOptions) {}

  get(id: string): LiveIo | undefined {
    return this.live.get(id);
  }

  ids(): string[] {
    return [...this.live.keys()];
  }

  /**
   * Opens the container's stdio ends and starts copying output into its CRI
   * log. `create` makes the FIFOs; `reattach` opens the ones an earlier
   * daemon made (they outlived it, held by the sandbox and the reaper).
   */
  async open(c: ContainerRecord, mode: 'create' | 'reattach'): Promise<LiveIo> {
    const dir = this.opts.containerDir(c.id);
    const { reaper, logger } = this.opts;
    const output = (name: string): Promise<OutputFifo> => (mode === 'create' ? OutputFifo.create(join(dir, name), logger, reaper) : OutputFifo.reattach(join(dir, name)));
    const opened: { close(): Promise<void> }[] = [];
    const kept = async <T extends { close(): Promise<void> }>(end: Promise<T>): Promise<T> => {
      const v = await end;
      opened.push(v);
      return v;
    };
    const control = c.terminal ? join(dir, 'tty-control') : undefined;
    const writer = c.logPath ? new CriLogWriter(c.logPath, { logger }) : undefined;
    try {
      // Side by side: each FIFO is a round trip to the reaper, and CreateContainer waits for all of them.
      const [stdout, stderr, stdin] = await sideBySide([
        kept(output('stdout')),
        control ? makeAnyFifo(control, reaper).then(() => undefined) : kept(output('stderr')),
        c.stdin ? kept(mode === 'create' ? StdinFifo.create(join(dir, 'stdin'), reaper) : StdinFifo.reattach(join(dir, 'stdin'))) : undefined,
        writer ? kept(writer.open().then(() => writer)) : undefined,
      ] as const);
      const outputs: [Readable, 'stdout' | 'stderr'][] = [[stdout.reader, 'stdout']];
      if (stderr) outputs.push([stderr.reader, 'stderr']);
      const pumps = outputs.map(([r, name]) => (writer ? writer.pump(r, name) : drain(r)));
      const io: LiveIo = { stdout, stderr, stdin, control, writer, pumps };
      // A new FIFO is held by the reaper that made it (OutputFifo.create); after a restart this daemon's reaper holds them too.
      if (mode === 'reattach') this.opts.driver.holdOutput(stderr ? [stdout.path, stderr.path] : [stdout.path]);
      this.live.set(c.id, io);
      return io;
    } catch (err) {
      for (const o of opened) await o.close().catch(() => undefined);
      throw wrapError(err, `open stdio of container ${c.id.slice(0, 12)}`);
    }
  }

  /**
   * Closes the daemon's stdio ends. With `drain`, first lets the output
   * reach EOF (bounded), so the log holds everything the container wrote.
   */
  async close(id: string, drain: boolean): Promise<void> {
    const io = this.live.get(id);
    if (!io) return;
    this.live.delete(id);
    const all = Promise.all(io.pumps);
    if (drain) await Promise.race([all, sleep(OUTPUT_DRAIN_MS)]);
    await io.stdout.close().catch(() => undefined);
    await io.stderr?.close().catch(() => undefined);
    await io.stdin?.close().catch(() => undefined);
    await Promise.race([all, sleep(100)]);
    await io.writer?.close();
  }

  /** The stdin FIFO of a container opened with stdin, for attach. */
  stdinOf(id: string): StdinFifo | undefined {
    return this.live.get(id)?.stdin;
  }

  /**
   * Closes the daemon's end of a container's stdin so the container reads
   * EOF (stdin_once after an attach). Later attaches get no stdin.
   */
  async closeStdin(id: string): Promise<void> {
    const io = this.live.get(id);
    const stdin = io?.stdin;
    if (!io || !stdin) return;
    io.stdin = undefined;
    await stdin.close();
    // The reaper feeds the terminal from its own end of the FIFO: tell it that input ended.
    if (io.control) await writeControl(io.control, 'E');
  }

  /** Resizes a tty container's terminal; false when it has none (or it is gone). */
  async resizeTerminal(id: string, cols: number, rows: number): Promise<boolean> {
    const control = this.live.get(id)?.control;
    if (!control) return false;
    return writeControl(control, `R ${cols} ${rows}`);
  }

  /**
   * Hands every chunk of a running container's stdout/stderr to `listener`
   * too, alongside the CRI log (attach). `ended` resolves when the output
   * ends (the container exited). Undefined when its output is not read here.
   */
  subscribeOutput(id: string, listener: (stream: 'stdout' | 'stderr', chunk: Buffer) => void): { ended: Promise<void>; unsubscribe(): void } | undefined {
    const io = this.live.get(id);
    if (!io) return undefined;
    const onOut = (chunk: Buffer): void => listener('stdout', chunk);
    const onErr = (chunk: Buffer): void => listener('stderr', chunk);
    io.stdout.reader.on('data', onOut);
    io.stderr?.reader.on('data', onErr);
    const endOf = (r: Readable): Promise<void> => new Promise((resolve) => {
      if (r.destroyed || r.readableEnded) return resolve();
      r.once('end', resolve);
      r.once('close', resolve);
    });
    return {
      ended: Promise.all([endOf(io.stdout.reader), io.stderr && endOf(io.stderr.reader)]).then(() => undefined),
      unsubscribe() {
        io.stdout.reader.off('data', onOut);
        io.stderr?.reader.off('data', onErr);
      },
    };
  }
}

/** How the driver connects a container's stdio, from the daemon's open ends. */
export function containerIo(io: LiveIo): ContainerIo {
  if (io.control) return { kind: 'tty', stdout: io.stdout, stdin: io.stdin, control: io.control };
  if (!io.stderr) throw internal('container stdio: no stderr FIFO and no terminal');
  return { kind: 'fifo', stdout: io.stdout, stderr: io.stderr, stdin: io.stdin };
}

/** Reads and drops output nobody logs, so the pipe never fills. */
function drain(r: Readable): Promise<void> {
  return new Promise((resolve) => {
    r.on('data', () => undefined);
    r.once('end', resolve);
    r.once('close', resolve);
    r.once('error', () => resolve());
  });
}

/**
 * One line to a terminal's control FIFO. Non-blocking: with no reader
 * (the reaper is gone, so is the terminal) the open fails and it is false.
 */
async function writeControl(path: string, line: string): Promise<boolean> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, fsc.O_WRONLY | fsc.O_NONBLOCK);
    await fh.write(`${line}\n`);
    return true;
  } catch {
    return false;
  } finally {
    await fh?.close();
  }
}
