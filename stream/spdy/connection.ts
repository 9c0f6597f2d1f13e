// One SPDY/3.1 connection over a byte stream (a TCP socket after the HTTP
// upgrade, or a WebSocket tunnel): stream table, PING echo, RST/GOAWAY, idle
// timeout, TCP back-pressure. Frames are handled strictly in arrival order and
// written strictly in call order even though header (de)compression is async.
// No SPDY flow control: spdystream never sends WINDOW_UPDATE, so enforcing
// send windows would stall output; back-pressure is the socket's own.

import { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import {
  FLAG_FIN, FrameParser, GoAwayStatus, RstStatus, SpdyProtocolError,
  decodeHeaderBlock, encodeDataHeader, encodeFrame, encodeHeaderBlock,
  type Frame, type SpdyHeaders,
} from './frames.js';
import { HeaderCompressor, HeaderDecompressor } from './header-compression.js';

/** Largest DATA frame we send; the size client-go and kubelet use. */
export const MAX_DATA_FRAME = 32 * 1024;

const DEFAULT_IDLE_TIMEOUT_MS = 4 * 60 * 60 * 1000;
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

export interface SpdyConnectionOptions {
  /** Servers accept streams from the peer; clients create them. */
  role: 'server' | 'client';
  /** Bytes that arrived together with the HTTP upgrade. */
  head?: Buffer;
  /** Closes the connection when no frame is read or written for this long (default 4 h). */
  idleTimeoutMs?: number;
  logger: Logger;
  /**
   * Called for each stream the peer opens (server role). The callee must
   * answer synchronously or soon with stream.reply() or stream.reset().
   */
  onStream?: (stream: SpdyStream) => void;
}

/** One SPDY stream as a Node Duplex: reads the peer's DATA, writes ours. Never emits 'error'. */
export class SpdyStream extends Duplex {
  /** Headers of the SYN_REPLY (client role), once received. */
  replyHeaders: SpdyHeaders | undefined;
  /** RST_STREAM status sent or received, once the stream was reset. */
  resetStatus: number | undefined;
  replied: boolean;
  localFin = false;
  remoteFin = false;

  constructor(private readonly conn: SpdyConnection, readonly id: number, readonly headers: SpdyHeaders, replied: boolean) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.replied = replied;
  }

  /** Accepts a stream the peer opened by sending SYN_REPLY. */
  reply(headers: SpdyHeaders = {}): void {
    if (this.replied || this.destroyed) return;
    this.replied = true;
    this.conn.sendReply(this, headers);
  }

  /** Aborts the stream in both directions with RST_STREAM. */
  reset(status: number = RstStatus.CANCEL): void {
    if (this.resetStatus !== undefined || this.destroyed) return;
    this.resetStatus = status;
    this.conn.sendRst(this.id, status);
    this.destroy();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.conn.writeData(this, chunk, false, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.localFin = true;
    this.conn.writeData(this, Buffer.alloc(0), true, cb);
  }

  override _read(): void {
    this.conn.unblock(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.conn.forget(this);
    cb(err);
  }
}

export class SpdyConnection {
  private readonly parser = new FrameParser();
  private readonly compressor = new HeaderCompressor();
  private readonly decompressor = new HeaderDecompressor();
  private readonly streams = new Map<number, SpdyStream>();
  private readonly blocked = new Set<SpdyStream>();
  private readonly pendingCreates = new Map<number, { resolve: (s: SpdyStream) => void; reject: (e: Error) => void }>();
  private readonly pendingPings = new Map<number, () => void>();
  private readonly logger: Logger;
  private readonly idleTimer: NodeJS.Timeout;
  private inbox: Frame[] = [];
  private processing = false;
  /** Frames waiting for an earlier header block's compression; an array is one write of several pieces. */
  private out: Array<Buffer | Buffer[] | Promise<Buffer>> = [];
  private flushing = false;
  private afterFlush: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];
  /** Highest stream id the peer opened; the last-good id of our GOAWAY. */
  private lastPeerStreamId = 0;
  private nextStreamId: number;
  private nextPingId: number;
  private goawaySent = false;
  private goawayReceived = false;
  private peerEnded = false;
  private peerEndHandled = false;
  private finalized = false;
  private socketGone = false;
  private closeTimer: NodeJS.Timeout | undefined;
  private resolveClosed!: () => void;
  /** Settles once the underlying byte stream has closed and every stream is gone. */
  readonly closed: Promise<void> = new Promise((resolve) => { this.resolveClosed = resolve; });

  constructor(private readonly socket: Duplex, private readonly opts: SpdyConnectionOptions) {
    this.logger = opts.logger;
    this.nextStreamId = opts.role === 'client' ? 1 : 2;
    this.nextPingId = opts.role === 'client' ? 1 : 2;
    const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.idleTimer = setTimeout(() => this.onIdle(idleMs), idleMs);
    this.idleTimer.unref();
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('end', () => this.onPeerEnd());
    socket.on('error', (err: Error) => {
      this.logger.debug({ err: err.message }, 'spdy connection socket error');
      socket.destroy();
    });
    socket.on('close', () => this.onSocketClose());
    socket.on('drain', () => this.releaseDrainWaiters());
    if (opts.head && opts.head.length > 0) this.onBytes(opts.head);
  }

  /** Client role: opens a stream and waits for the peer's SYN_REPLY. */
  createStream(headers: SpdyHeaders, opts: { fin?: boolean } = {}): Promise<SpdyStream> {
    if (this.opts.role !== 'client') return Promise.reject(new Error('only the client side of a SPDY connection opens streams'));
    if (this.goawaySent || this.goawayReceived || this.socketGone) return Promise.reject(new Error('SPDY connection is going away; cannot open a stream'));
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new SpdyStream(this, id, headers, true);
    this.streams.set(id, stream);
    if (opts.fin) {
      stream.localFin = true;
      stream.end();
    }
    const frame = this.compressor.compress(encodeHeaderBlock(headers)).then((headerBlock) =>
      encodeFrame({ type: 'syn_stream', streamId: id, associatedId: 0, priority: 0, slot: 0, flags: opts.fin ? FLAG_FIN : 0, headerBlock }));
    this.send(frame);
    return new Promise((resolve, reject) => this.pendingCreates.set(id, { resolve, reject }));
  }

  /** Sends a PING and resolves with the round-trip time in ms. */
  ping(): Promise<number> {
    const id = this.nextPingId;
    this.nextPingId = (this.nextPingId + 2) >>> 0;
    const start = performance.now();
    return new Promise((resolve, reject) => {
      if (this.socketGone) { reject(new Error('SPDY connection closed')); return; }
      this.pendingPings.set(id, () => resolve(performance.now() - start));
      this.send(encodeFrame({ type: 'ping', flags: 0, id }));
    });
  }

  /**
   * Ends the connection cleanly: GOAWAY after everything already queued, then
   * half-close and wait for the peer to close (closing first would lose output
   * still in flight), bounded by timeoutMs.
   */
  shutdown(timeoutMs: number = DEFAULT_CLOSE_TIMEOUT_MS): Promise<void> {
    if (!this.goawaySent && !this.socketGone) {
      this.goawaySent = true;
      this.send(encodeFrame({ type: 'goaway', flags: 0, lastGoodStreamId: this.lastPeerStreamId, status: GoAwayStatus.OK }));
    }
    // Nobody reads our streams any more: stop holding their input so the socket keeps flowing to EOF.
    for (const s of [...this.streams.values()]) if (s.writableFinished || s.localFin) s.destroy();
    this.blocked.clear();
    this.socket.resume();
    this.endSocketAfterQueue(timeoutMs);
    return this.closed;
  }

  /** Tears everything down at once: RST every stream, GOAWAY, close. */
  abort(reason: string, status: number = GoAwayStatus.INTERNAL_ERROR): Promise<void> {
    this.logger.debug({ reason }, 'aborting spdy connection');
    for (const s of [...this.streams.values()]) s.reset(RstStatus.CANCEL);
    if (!this.goawaySent && !this.socketGone) {
      this.goawaySent = true;
      this.send(encodeFrame({ type: 'goaway', flags: 0, lastGoodStreamId: this.lastPeerStreamId, status }));
    }
    this.endSocketAfterQueue(1000);
    return this.closed;
  }

  get isClosed(): boolean {
    return this.socketGone;
  }

  // ---- used by SpdyStream ----

  sendReply(stream: SpdyStream, headers: SpdyHeaders): void {
    const frame = this.compressor.compress(encodeHeaderBlock(headers)).then((headerBlock) =>
      encodeFrame({ type: 'syn_reply', streamId: stream.id, flags: 0, headerBlock }));
    this.send(frame);
  }

  sendRst(streamId: number, status: number): void {
    this.send(encodeFrame({ type: 'rst_stream', streamId, flags: 0, status }));
  }

  writeData(stream: SpdyStream, chunk: Buffer, fin: boolean, cb: (err?: Error | null) => void): void {
    if (this.socketGone || stream.resetStatus !== undefined) { cb(); return; }
    // spdystream drops DATA on a stream it has no reply for yet.
    if (!stream.replied) stream.reply();
    // Payloads go out as views of chunk, after cb may have run: writers hand over
    // fresh buffers (pipes from sockets and processes do) and never reuse them.
    const pieces: Buffer[] = [];
    if (chunk.length === 0) pieces.push(encodeDataHeader(stream.id, fin ? FLAG_FIN : 0, 0));
    for (let off = 0; off < chunk.length; off += MAX_DATA_FRAME) {
      const end = Math.min(off + MAX_DATA_FRAME, chunk.length);
      pieces.push(encodeDataHeader(stream.id, fin && end === chunk.length ? FLAG_FIN : 0, end - off), chunk.subarray(off, end));
    }
    this.send(pieces);
    if (fin) this.maybeRetire(stream);
    if (this.socket.writableNeedDrain) this.drainWaiters.push(() => cb());
    else cb();
  }

  unblock(stream: SpdyStream): void {
    if (this.blocked.delete(stream) && this.blocked.size === 0 && !this.socketGone) this.socket.resume();
  }

  forget(stream: SpdyStream): void {
    // A stream dropped while we may still send on it: tell the peer, or it waits forever.
    if (!stream.localFin && stream.resetStatus === undefined && !this.socketGone && this.streams.get(stream.id) === stream) {
      stream.resetStatus = RstStatus.CANCEL;
      this.sendRst(stream.id, RstStatus.CANCEL);
    }
    this.streams.delete(stream.id);
    const pending = this.pendingCreates.get(stream.id);
    if (pending) {
      this.pendingCreates.delete(stream.id);
      pending.reject(new Error(`SPDY stream ${stream.id} was ${stream.resetStatus !== undefined ? `reset (status ${stream.resetStatus})` : 'closed'} before the reply`));
    }
    this.unblock(stream);
  }

  // ---- reading ----

  private onBytes(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.parser.push(chunk);
    } catch (err) {
      this.protocolError(err);
      return;
    }
    if (frames.length === 0) return;
    this.idleTimer.refresh();
    for (const f of frames) this.inbox.push(f);
    void this.processInbox();
  }

  private async processInbox(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.inbox.length > 0) {
        const frame = this.inbox.shift()!;
        const pending = this.handleFrame(frame);
        if (pending) await pending;
      }
    } catch (err) {
      this.inbox = [];
      this.protocolError(err);
    } finally {
      this.processing = false;
    }
    // The peer's EOF and the socket's close wait for frames that arrived before them.
    if (this.peerEnded) this.afterPeerEnd();
    if (this.socketGone) this.afterSocketClose();
  }

  /** Returns a promise only for frames that carry a header block (they wait for zlib). */
  private handleFrame(frame: Frame): Promise<void> | undefined {
    switch (frame.type) {
      case 'data': return this.onData(frame.streamId, frame.flags, frame.data);
      case 'syn_stream': return this.onSynStream(frame.streamId, frame.flags, frame.headerBlock);
      case 'syn_reply': return this.onSynReply(frame.streamId, frame.headerBlock);
      case 'headers':
        // Never used by these protocols, but the block must pass through zlib to keep its state.
        return this.decompressor.decompress(frame.headerBlock).then(() => undefined);
      case 'rst_stream': {
        const stream = this.streams.get(frame.streamId);
        if (stream) {
          stream.resetStatus = frame.status;
          stream.emit('reset', frame.status);
          stream.destroy();
        }
        return undefined;
      }
      case 'ping':
        if (this.isPeerPing(frame.id)) {
          this.send(encodeFrame({ type: 'ping', flags: 0, id: frame.id }));
        } else {
          const done = this.pendingPings.get(frame.id);
          this.pendingPings.delete(frame.id);
          done?.();
        }
        return undefined;
      case 'goaway':
        this.goawayReceived = true;
        for (const [id, p] of this.pendingCreates) {
          if (id > frame.lastGoodStreamId) {
            this.pendingCreates.delete(id);
            p.reject(new Error(`SPDY peer sent GOAWAY (status ${frame.status}) before accepting stream ${id}`));
          }
        }
        return undefined;
      case 'settings':
      case 'window_update':
      case 'unknown':
        return undefined;
    }
  }

  private isPeerPing(id: number): boolean {
    const peerParity = this.opts.role === 'server' ? 1 : 0;
    return id % 2 === peerParity;
  }

  private onData(streamId: number, flags: number, data: Buffer): undefined {
    const stream = this.streams.get(streamId);
    if (!stream) {
      // Frames racing our RST or retirement of a known stream are expected; anything else is a peer bug.
      if (streamId > this.highestKnownId(streamId)) this.sendRst(streamId, RstStatus.INVALID_STREAM);
      return undefined;
    }
    if (stream.remoteFin) return undefined;
    // Back-pressure pauses the whole connection (SPDY's per-stream windows are
    // not used), so only the server applies it, to bound the daemon's memory.
    // A client pausing for one unread stream would also stop the SYN_REPLYs
    // its other createStream calls wait for: a deadlock, not a slowdown.
    if (data.length > 0 && !stream.push(data) && this.opts.role === 'server') {
      this.blocked.add(stream);
      this.socket.pause();
    }
    if (flags & FLAG_FIN) {
      stream.remoteFin = true;
      stream.push(null);
      this.maybeRetire(stream);
    }
    return undefined;
  }

  private highestKnownId(streamId: number): number {
    const own = this.opts.role === 'client' ? 1 : 0;
    return streamId % 2 === own ? this.nextStreamId - 2 : this.lastPeerStreamId;
  }

  private async onSynStream(streamId: number, flags: number, headerBlock: Buffer): Promise<void> {
    // Always inflate: skipping a block would desynchronize the zlib context.
    const headers = decodeHeaderBlock(await this.decompressor.decompress(headerBlock));
    if (this.opts.role !== 'server' || !this.opts.onStream) {
      this.sendRst(streamId, RstStatus.REFUSED_STREAM);
      return;
    }
    if (streamId % 2 !== 1 || streamId <= this.lastPeerStreamId) {
      this.logger.debug({ streamId, last: this.lastPeerStreamId }, 'spdy peer opened a stream with a bad id');
      this.sendRst(streamId, RstStatus.PROTOCOL_ERROR);
      return;
    }
    this.lastPeerStreamId = streamId;
    if (this.goawaySent) {
      this.sendRst(streamId, RstStatus.REFUSED_STREAM);
      return;
    }
    const stream = new SpdyStream(this, streamId, headers, false);
    this.streams.set(streamId, stream);
    if (flags & FLAG_FIN) {
      stream.remoteFin = true;
      stream.push(null);
    }
    this.opts.onStream(stream);
  }

  private async onSynReply(streamId: number, headerBlock: Buffer): Promise<void> {
    const headers = decodeHeaderBlock(await this.decompressor.decompress(headerBlock));
    const stream = this.streams.get(streamId);
    const pending = this.pendingCreates.get(streamId);
    if (!stream || !pending) return;
    this.pendingCreates.delete(streamId);
    stream.replyHeaders = headers;
    pending.resolve(stream);
  }

  private onPeerEnd(): void {
    this.peerEnded = true;
    if (!this.processing) this.afterPeerEnd();
  }

  private afterPeerEnd(): void {
    if (this.peerEndHandled) return;
    this.peerEndHandled = true;
    // The peer will send nothing more; streams still open on its side never finish.
    for (const s of [...this.streams.values()]) {
      if (!s.remoteFin) s.destroy();
    }
    this.endSocketAfterQueue(DEFAULT_CLOSE_TIMEOUT_MS);
  }

  private onSocketClose(): void {
    this.socketGone = true;
    clearTimeout(this.idleTimer);
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.out = [];
    if (!this.processing) this.afterSocketClose();
  }

  private afterSocketClose(): void {
    if (this.finalized) return;
    this.finalized = true;
    this.inbox = [];
    for (const s of [...this.streams.values()]) s.destroy();
    for (const [, p] of this.pendingCreates) p.reject(new Error('SPDY connection closed before the stream was accepted'));
    this.pendingCreates.clear();
    this.pendingPings.clear();
    this.releaseDrainWaiters();
    this.decompressor.close();
    this.resolveClosed();
  }

  private onIdle(idleMs: number): void {
    this.logger.info({ idleMs }, 'closing idle streaming connection');
    void this.abort(`no frame for ${idleMs} ms`, GoAwayStatus.OK);
  }

  private protocolError(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this.logger.warn({ err: message, protocolError: err instanceof SpdyProtocolError }, 'closing spdy connection after a protocol error');
    void this.abort(message, GoAwayStatus.PROTOCOL_ERROR);
  }

  // ---- writing ----

  private send(item: Buffer | Buffer[] | Promise<Buffer>): void {
    if (this.socketGone) return;
    if (this.out.length === 0 && !(item instanceof Promise)) {
      this.rawWrite(item);
      return;
    }
    this.out.push(item);
    void this.flushOut();
  }

  private async flushOut(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.out.length > 0) {
        const buf = await this.out[0]!;
        this.out.shift();
        this.rawWrite(buf);
      }
      const callbacks = this.afterFlush;
      this.afterFlush = [];
      for (const cb of callbacks) cb();
    } catch (err) {
      this.out = [];
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'spdy header compression failed');
      this.socket.destroy();
    } finally {
      this.flushing = false;
    }
  }

  private rawWrite(buf: Buffer | Buffer[]): void {
    if (this.socketGone || this.socket.writableEnded) return;
    this.idleTimer.refresh();
    if (Buffer.isBuffer(buf)) {
      this.socket.write(buf);
    } else if (this.socket instanceof Socket) {
      // One writev of headers and payload views: no copy of the payload.
      this.socket.cork();
      for (const b of buf) this.socket.write(b);
      this.socket.uncork();
    } else {
      // A WebSocket tunnel sends each write as a message: keep one per batch.
      this.socket.write(Buffer.concat(buf));
    }
  }

  private releaseDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private maybeRetire(stream: SpdyStream): void {
    if (stream.localFin && stream.remoteFin) this.streams.delete(stream.id);
  }

  /** Half-closes once every queued frame is written, and destroys if the peer has not closed within timeoutMs. */
  private endSocketAfterQueue(timeoutMs: number): void {
    if (this.socketGone) return;
    if (!this.closeTimer) {
      this.closeTimer = setTimeout(() => this.socket.destroy(), timeoutMs);
      this.closeTimer.unref();
    }
    const end = (): void => {
      if (!this.socketGone && !this.socket.writableEnded) this.socket.end();
    };
    if (this.out.length === 0) end();
    else this.afterFlush.push(end);
  }
}
