// Exec and attach: wires the client's streams to the backend and reports the
// outcome, whichever transport (SPDY or WebSocket) brought the streams.

import type { Duplex, Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import { SpdyConnection, type SpdyStream } from './spdy/connection.js';
import { RstStatus, headerValue } from './spdy/frames.js';
import { ResizeDecoder, ResizeQueue } from './resize.js';
import { errorMessage, type Session, type SessionContext } from './session.js';
import { legacyStatus, v4Status, type SessionOutcome } from './status.js';
import type { CachedRequest } from './tokens.js';
import type { StreamBackend, StreamIO } from './types.js';

export type ExecOrAttach = Extract<CachedRequest, { kind: 'exec' | 'attach' }>;

/** The client's streams, transport-neutral. */
export interface ExecChannels {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  resize?: ResizeQueue;
  signal: AbortSignal;
  /** Writes the outcome on the error channel and ends the session cleanly. */
  finish(outcome: SessionOutcome): Promise<void>;
}

/** Runs the exec/attach on the backend and reports how it ended. Never throws. */
export async function runExecOrAttach(cached: ExecOrAttach, backend: StreamBackend, channels: ExecChannels, logger: Logger): Promise<void> {
  const io: StreamIO = { signal: channels.signal };
  if (channels.stdin) io.stdin = channels.stdin;
  if (channels.stdout) io.stdout = channels.stdout;
  if (channels.stderr) io.stderr = channels.stderr;
  if (channels.resize) io.resize = channels.resize;
  let outcome: SessionOutcome;
  try {
    if (cached.kind === 'exec') {
      const { exitCode } = await backend.exec(cached.req, io);
      outcome = exitCode === 0 ? { kind: 'success' } : { kind: 'exit', exitCode, cmd: cached.req.cmd };
    } else {
      await backend.attach(cached.req, io);
      outcome = { kind: 'success' };
    }
  } catch (err) {
    const what = cached.kind === 'exec' ? `exec in container ${cached.req.containerId}` : `attach to container ${cached.req.containerId}`;
    logger.warn({ containerId: cached.req.containerId, err: errorMessage(err) }, `${cached.kind} failed`);
    outcome = { kind: 'error', message: `${what}: ${errorMessage(err)}` };
  }
  channels.resize?.end();
  await channels.finish(outcome);
}

/** How long server shutdown waits for an aborted backend to return before closing anyway. */
export const CLOSE_GRACE_MS = 3000;

/** Waits for p, but no longer than ms. */
export async function boundedWait(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => { timer = setTimeout(resolve, ms); })]);
  clearTimeout(timer);
}

/** Waits until everything written to w is flushed to the transport (or w is gone). */
export async function settleWritable(w: Writable | Duplex | undefined): Promise<void> {
  if (!w) return;
  try {
    await finished(w, { readable: false });
  } catch {
    // Destroyed by the client or the connection: nothing more to flush.
  }
}

type SpdyKind = 'error' | 'stdin' | 'stdout' | 'stderr' | 'resize';

/** Exec/attach over SPDY: collects the client's streams, runs, reports, shuts down. */
export class SpdyExecSession implements Session {
  readonly done: Promise<void>;
  private readonly conn: SpdyConnection;
  private readonly abort = new AbortController();
  private readonly expected = new Set<SpdyKind>();
  private readonly streams = new Map<SpdyKind, SpdyStream>();
  private readonly creationTimer: NodeJS.Timeout;
  private readonly logger: Logger;
  private started = false;
  private running: Promise<void> | undefined;

  constructor(socket: Duplex, head: Buffer, private readonly version: number, private readonly cached: ExecOrAttach, private readonly ctx: SessionContext) {
    const { req } = cached;
    this.logger = ctx.logger.child({ session: cached.kind, containerId: req.containerId, protocolVersion: version });
    this.expected.add('error');
    if (req.stdin) this.expected.add('stdin');
    if (req.stdout) this.expected.add('stdout');
    if (req.stderr && !req.tty) this.expected.add('stderr');
    if (req.tty && version >= 3) this.expected.add('resize');
    this.conn = new SpdyConnection(socket, { role: 'server', head, idleTimeoutMs: ctx.idleTimeoutMs, logger: this.logger, onStream: (s) => this.onStream(s) });
    this.creationTimer = setTimeout(() => {
      const missing = [...this.expected].filter((k) => !this.streams.has(k));
      this.logger.warn({ missing }, `client did not open all ${cached.kind} streams within ${ctx.streamCreationTimeoutMs} ms`);
      void this.conn.shutdown();
    }, ctx.streamCreationTimeoutMs);
    this.done = this.conn.closed.then(() => {
      clearTimeout(this.creationTimer);
      this.abort.abort(new Error('client connection closed'));
    });
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('streaming server shutting down'));
    // Let the aborted backend return so the client still gets a status.
    if (this.running) await boundedWait(this.running, CLOSE_GRACE_MS);
    await this.conn.shutdown();
  }

  private onStream(stream: SpdyStream): void {
    const kind = headerValue(stream.headers, 'streamtype')?.toLowerCase() as SpdyKind | undefined;
    if (this.started || !kind || !this.expected.has(kind) || this.streams.has(kind)) {
      this.logger.debug({ streamType: kind, streamId: stream.id }, 'rejecting unexpected stream');
      stream.reset(RstStatus.PROTOCOL_ERROR);
      return;
    }
    stream.on('error', (err: Error) => this.logger.debug({ streamType: kind, err: err.message }, 'stream error'));
    stream.reply();
    this.streams.set(kind, stream);
    if (this.streams.size === this.expected.size) this.start();
  }

  private start(): void {
    this.started = true;
    clearTimeout(this.creationTimer);
    const resizeStream = this.streams.get('resize');
    let resize: ResizeQueue | undefined;
    if (resizeStream) {
      const queue = new ResizeQueue();
      const decoder = new ResizeDecoder();
      resizeStream.on('data', (chunk: Buffer) => {
        try {
          for (const size of decoder.push(chunk)) queue.push(size);
        } catch (err) {
          this.logger.warn({ err: errorMessage(err) }, 'dropping malformed resize stream');
          queue.end();
          resizeStream.reset(RstStatus.PROTOCOL_ERROR);
        }
      });
      resizeStream.on('close', () => queue.end());
      resizeStream.on('end', () => queue.end());
      resize = queue;
    }
    const channels: ExecChannels = {
      signal: this.abort.signal,
      finish: (outcome) => this.finish(outcome),
    };
    const stdin = this.streams.get('stdin');
    const stdout = this.streams.get('stdout');
    const stderr = this.streams.get('stderr');
    if (stdin) channels.stdin = stdin;
    if (stdout) channels.stdout = stdout;
    if (stderr) channels.stderr = stderr;
    if (resize) channels.resize = resize;
    this.running = runExecOrAttach(this.cached, this.ctx.backend, channels, this.logger);
  }

  private async finish(outcome: SessionOutcome): Promise<void> {
    this.streams.get('stdin')?.reset(RstStatus.CANCEL);
    this.streams.get('resize')?.reset(RstStatus.CANCEL);
    const errorStream = this.streams.get('error')!;
    const status = this.version >= 4 ? v4Status(outcome) : legacyStatus(outcome);
    const outputs = [this.streams.get('stdout'), this.streams.get('stderr'), errorStream];
    if (status && !errorStream.destroyed && !errorStream.writableEnded) errorStream.write(status);
    for (const w of outputs) if (w && !w.destroyed && !w.writableEnded) w.end();
    await Promise.all(outputs.map((w) => settleWritable(w)));
    await this.conn.shutdown();
  }
}
