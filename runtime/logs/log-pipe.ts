/**
 * FIFOs that carry a container's stdio between the sandbox and the daemon
 * (gvisor.md "Files and logs"). The sandbox holds an O_RDWR descriptor of
 * each output FIFO, so it never sees EPIPE while the daemon is away; a
 * restarted daemon reopens the FIFO and drains what waited in the pipe.
 */
import { closeSync, constants as fsc, openSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { execa } from 'execa';
import { internal } from '../../cri-api/errors.js';
import type { Logger } from '../../cri-api/logger.js';
import type { Reaper } from '../runsc/reaper.js';

// Raw descriptors, not FileHandles: a FileHandle is closed when garbage
// collected, which would pull the fd from under the socket or the sandbox.
// Direct calls, not the threadpool (a round trip between threads each):
// none of these opens blocks, as the FIFO is opened non-blocking to read,
// O_RDWR to write, or to read once an O_RDWR end exists; and closing a
// FIFO's end never waits.
const openFd = async (path: string, flags: number): Promise<number> => openSync(path, flags);
const closeFd = async (fd: number): Promise<void> => closeSync(fd);

/** Pipe capacity asked for, so output survives a daemon restart of a few seconds. */
export const WANTED_PIPE_BYTES = 1024 * 1024;

/** The mkfifo(1) wrapper: node's fs cannot make FIFOs. An existing FIFO is kept. */
export async function makeFifo(path: string): Promise<void> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isFIFO()) return;
  const r = await execa('mkfifo', ['-m', '0600', path], { reject: false, timeout: 10_000, stdin: 'ignore' });
  if (r.exitCode !== 0) throw internal(`make FIFO ${path}: ${r.stderr.trim() || r.shortMessage}`);
}

/** A FIFO through the reaper when it runs (no process spawned), else mkfifo(1). */
export async function makeAnyFifo(path: string, reaper?: Reaper): Promise<void> {
  if (reaper?.running) await reaper.makeFifo(path);
  else await makeFifo(path);
}

/**
 * Grows the FIFO's pipe buffer with F_SETPIPE_SZ. Node has no fcntl, so
 * perl (always present on Debian: perl-base is essential) makes the call
 * on its own open of the FIFO: the size belongs to the pipe, not the fd.
 * Returns the new size, or undefined when it could not be grown.
 */
export async function growPipe(path: string, bytes: number = WANTED_PIPE_BYTES): Promise<number | undefined> {
  const F_SETPIPE_SZ = 1031;
  const script = `open(my $f, '+<', $ARGV[0]) or exit 2; my $r = fcntl($f, ${F_SETPIPE_SZ}, int($ARGV[1])) or exit 3; print $r + 0;`;
  const r = await execa('perl', ['-e', script, path, String(bytes)], { reject: false, timeout: 10_000, stdin: 'ignore' });
  const n = Number.parseInt(r.stdout, 10);
  return r.exitCode === 0 && Number.isFinite(n) ? n : undefined;
}

/**
 * One output stream (stdout or stderr) of a container. `writerFd` is the
 * O_RDWR descriptor to hand to runsc; `reader` is the daemon's own
 * non-blocking O_RDONLY end.
 */
export class OutputFifo {
  readonly path: string;
  readonly reader: Readable;
  private writer: number | undefined;

  private constructor(path: string, reader: Readable, writer: number | undefined) {
    this.path = path;
    this.reader = reader;
    this.writer = writer;
  }

  /**
   * Makes the FIFO if needed and opens both ends; for a new container. With
   * a running reaper, it makes, holds and grows the FIFO (no process spawned).
   */
  static async create(path: string, logger?: Logger, reaper?: Reaper): Promise<OutputFifo> {
    const viaReaper = reaper?.running === true;
    let size: number | undefined;
    if (viaReaper) size = (await reaper.makeFifo(path, WANTED_PIPE_BYTES)) || undefined;
    else await makeFifo(path);
    // Reader first: a non-blocking O_RDONLY open of a FIFO never waits.
    const reader = await openFifoReader(path);
    const writer = await openFd(path, fsc.O_RDWR);
    if (!viaReaper) size = await growPipe(path);
    if (size === undefined) logger?.warn({ fifo: path }, 'could not grow the log pipe; output waits in 64 KiB while the daemon is away');
    return new OutputFifo(path, reader, writer);
  }

  /** Reopens only the reading end of an existing FIFO: after a daemon restart or a reader pause. */
  static async reattach(path: string): Promise<OutputFifo> {
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFIFO()) throw internal(`reopen log FIFO ${path}: not a FIFO`);
    return new OutputFifo(path, await openFifoReader(path), undefined);
  }

  /** The descriptor runsc gets as the container's stream. */
  get writerFd(): number {
    if (this.writer === undefined) throw internal(`log FIFO ${this.path}: writing end already released`);
    return this.writer;
  }

  /** Closes the daemon's copy of the writing end once the sandbox holds its own. */
  async releaseWriter(): Promise<void> {
    const w = this.writer;
    this.writer = undefined;
    if (w !== undefined) await closeFd(w);
  }

  /** Stops reading; unread bytes stay in the pipe for a later reader. */
  async close(): Promise<void> {
    await this.releaseWriter();
    this.reader.destroy();
  }
}

/** The daemon's reading end of a FIFO: opened non-blocking (never waits), read through the event loop. */
export async function openFifoReader(path: string): Promise<Socket> {
  const fd = await openFd(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  // A net.Socket over the fd reads through libuv's event loop (no thread
  // blocked in read(2)), which is what a non-blocking FIFO needs.
  return new Socket({ fd, readable: true, writable: false });
}

/** An O_RDWR end of a FIFO as a stream to write: the open never waits, and the pipe lives while it is open. */
export async function openFifoWriter(path: string): Promise<Socket> {
  return new Socket({ fd: await openFd(path, fsc.O_RDWR), readable: false, writable: true });
}

/**
 * A container's stdin: the daemon holds an O_RDWR end (so the pipe lives
 * and attach can write at any time) and gives runsc a blocking O_RDONLY one.
 */
export class StdinFifo {
  readonly path: string;
  readonly writable: Writable;
  private containerEnd: number | undefined;

  private constructor(path: string, writable: Writable, containerEnd: number | undefined) {
    this.path = path;
    this.writable = writable;
    this.containerEnd = containerEnd;
  }

  static async create(path: string, reaper?: Reaper): Promise<StdinFifo> {
    await makeAnyFifo(path, reaper);
    const writable = await openFifoWriter(path);
    // Does not block: the O_RDWR end above already counts as a writer.
    const containerEnd = await openFd(path, fsc.O_RDONLY);
    return new StdinFifo(path, writable, containerEnd);
  }

  /** Reopens the writing end after a daemon restart (the container still reads). */
  static async reattach(path: string): Promise<StdinFifo> {
    return new StdinFifo(path, await openFifoWriter(path), undefined);
  }

  /** The descriptor runsc gets as the container's stdin. */
  get containerFd(): number {
    if (this.containerEnd === undefined) throw internal(`stdin FIFO ${this.path}: reading end already released`);
    return this.containerEnd;
  }

  async releaseContainerEnd(): Promise<void> {
    const c = this.containerEnd;
    this.containerEnd = undefined;
    if (c !== undefined) await closeFd(c);
  }

  /** Closes the daemon's end: once the sandbox's is the only one left, the container reads EOF. */
  async close(): Promise<void> {
    await this.releaseContainerEnd();
    await new Promise<void>((resolve) => {
      this.writable.once('close', () => resolve());
      this.writable.end();
      this.writable.destroy();
    });
  }
}
