/**
 * The CRI container log file kubelet reads:
 *   <RFC3339Nano time> <stdout|stderr> <P|F> <content>\n
 * P marks a partial line (a long line split, or an unterminated last one).
 * Writing is asynchronous and bounded per container: a slow disk drops
 * lines here (counted) instead of blocking the event loop or the workload.
 */
import { open, mkdir, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { KeyedLock } from '../../common/index.js';
import type { Logger } from '../../cri-api/logger.js';

export type LogStream = 'stdout' | 'stderr';

/** kubelet's and containerd's split size for long lines. */
export const MAX_LINE_BYTES = 16 * 1024;
export const DEFAULT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/** Go's time.RFC3339Nano: UTC, fraction with trailing zeros removed. */
export function rfc3339Nano(epochNs: bigint): string {
  const ms = epochNs / 1_000_000n;
  const base = new Date(Number(ms)).toISOString().slice(0, 19);
  const frac = (epochNs % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return `${base}${frac ? `.${frac}` : ''}Z`;
}

// Wall clock with nanosecond digits: Date.now() anchors, hrtime advances.
const anchorWallNs = BigInt(Date.now()) * 1_000_000n;
const anchorMonoNs = process.hrtime.bigint();
function nowNs(): bigint {
  return anchorWallNs + (process.hrtime.bigint() - anchorMonoNs);
}

export interface CriLogWriterOptions {
  maxLineBytes?: number;
  /** Bytes waiting for the disk beyond which new lines are dropped. */
  maxBufferedBytes?: number;
  logger?: Logger;
  /** Clock, for tests. */
  now?: () => bigint;
}

export class CriLogWriter {
  readonly path: string;
  private readonly maxLine: number;
  private readonly maxBuffered: number;
  private readonly logger?: Logger;
  private readonly now: () => bigint;
  private readonly pending: Record<LogStream, Buffer[]> = { stdout: [], stderr: [] };
  private readonly pendingBytes: Record<LogStream, number> = { stdout: 0, stderr: 0 };
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private fh: FileHandle | undefined;
  /** Every file operation runs under this lock, so writes and reopen never interleave. */
  private readonly fileOps = new KeyedLock();
  private drainScheduled = false;
  private closed = false;
  /** Lines dropped because the disk did not keep up. */
  dropped = 0;

  constructor(path: string, options: CriLogWriterOptions = {}) {
    this.path = path;
    this.maxLine = options.maxLineBytes ?? MAX_LINE_BYTES;
    this.maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.logger = options.logger;
    this.now = options.now ?? nowNs;
  }

  /** Opens (creating, appending) the log file. */
  async open(): Promise<void> {
    await this.enqueueOp(() => this.openFile());
  }

  /** Takes bytes read from a stream; complete lines are queued for the file. */
  write(stream: LogStream, chunk: Buffer): void {
    if (this.closed) return;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      this.appendPending(stream, chunk.subarray(start, end));
      if (nl === -1) break;
      this.emit(stream, 'F', this.takePending(stream));
      start = nl + 1;
    }
  }

  /** The stream ended: an unterminated last line is written as partial. */
  endStream(stream: LogStream): void {
    if (this.pendingBytes[stream] > 0) this.emit(stream, 'P', this.takePending(stream));
  }

  /** Reads `readable` to its end into this log, as `stream`. */
  pump(readable: Readable, stream: LogStream): Promise<void> {
    return new Promise<void>((resolve) => {
      readable.on('data', (chunk: Buffer) => this.write(stream, chunk));
      const done = (): void => {
        this.endStream(stream);
        resolve();
      };
      readable.once('end', done);
      readable.once('close', done);
      readable.once('error', (err) => this.logger?.warn({ err, log: this.path, stream }, 'reading container output failed'));
    });
  }

  /** Resolves when everything queued so far is on disk (or dropped on error). */
  async flush(): Promise<void> {
    await this.enqueueOp(() => this.drain());
  }

  /** Closes and reopens the path, for kubelet's log rotation (ReopenContainerLog). */
  async reopen(): Promise<void> {
    await this.enqueueOp(async () => {
      await this.drain();
      await this.fh?.close();
      this.fh = undefined;
      await this.openFile();
    });
  }

  /** Writes partial lines out, flushes and closes the file. */
  async close(): Promise<void> {
    this.endStream('stdout');
    this.endStream('stderr');
    this.closed = true;
    await this.enqueueOp(async () => {
      await this.drain();
      await this.fh?.close();
      this.fh = undefined;
    });
  }

  private appendPending(stream: LogStream, part: Buffer): void {
    while (part.length > 0) {
      const room = this.maxLine - this.pendingBytes[stream];
      if (part.length <= room) {
        if (part.length > 0) {
          this.pending[stream].push(Buffer.from(part));
          this.pendingBytes[stream] += part.length;
        }
        return;
      }
      // Only a line longer than maxLine is split; the piece goes out as partial.
      this.pending[stream].push(Buffer.from(part.subarray(0, room)));
      this.pendingBytes[stream] += room;
      this.emit(stream, 'P', this.takePending(stream));
      part = part.subarray(room);
    }
  }

  private takePending(stream: LogStream): Buffer {
    const b = Buffer.concat(this.pending[stream]);
    this.pending[stream] = [];
    this.pendingBytes[stream] = 0;
    return b;
  }

  private emit(stream: LogStream, tag: 'P' | 'F', content: Buffer): void {
    const line = Buffer.concat([Buffer.from(`${rfc3339Nano(this.now())} ${stream} ${tag} `), content, Buffer.from('\n')]);
    if (this.queuedBytes + line.length > this.maxBuffered) {
      if (this.dropped === 0) this.logger?.warn({ log: this.path }, 'container log writer is behind; dropping lines');
      this.dropped++;
      return;
    }
    this.queue.push(line);
    this.queuedBytes += line.length;
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      void this.enqueueOp(() => this.drain());
    }
  }

  private enqueueOp(op: () => Promise<void>): Promise<void> {
    return this.fileOps.run(this.path, op).catch((err: unknown) => {
      this.logger?.warn({ err, log: this.path }, 'container log write failed');
    });
  }

  private async openFile(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    this.fh = await open(this.path, 'a', 0o640);
  }

  private async drain(): Promise<void> {
    this.drainScheduled = false;
    while (this.queue.length > 0) {
      const batch = Buffer.concat(this.queue);
      this.queue = [];
      this.queuedBytes -= batch.length;
      if (!this.fh) {
        this.dropped++;
        continue;
      }
      await this.fh.write(batch);
    }
  }
}
