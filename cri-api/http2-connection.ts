/**
 * The server side of one HTTP/2 connection (RFC 9113), as lean as gRPC on a
 * unix socket needs: frames in, whole header blocks decoded with the
 * connection's HPACK state and handed on as requests; flow control both
 * ways; what a stream answers goes out in as few socket writes as its
 * windows allow (one for a small unary answer). Any `:authority`, or none,
 * is taken: grpc-go clients up to kubelet 1.30 send the socket path.
 * Malformed input ends this connection only, with a GOAWAY naming the
 * problem. Knows nothing of gRPC.
 */
import type { Socket } from 'node:net';
import { HpackDecoder, HpackError, type HeaderField } from './hpack.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const enum Type {
  DATA = 0x0,
  HEADERS = 0x1,
  PRIORITY = 0x2,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  PUSH_PROMISE = 0x5,
  PING = 0x6,
  GOAWAY = 0x7,
  WINDOW_UPDATE = 0x8,
  CONTINUATION = 0x9,
}
const enum Flag {
  END_STREAM = 0x1,
  ACK = 0x1,
  END_HEADERS = 0x4,
  PADDED = 0x8,
  PRIORITY = 0x20,
}

export const enum H2Error {
  NO_ERROR = 0x0,
  PROTOCOL_ERROR = 0x1,
  INTERNAL_ERROR = 0x2,
  FLOW_CONTROL_ERROR = 0x3,
  STREAM_CLOSED = 0x5,
  FRAME_SIZE_ERROR = 0x6,
  REFUSED_STREAM = 0x7,
  CANCEL = 0x8,
  COMPRESSION_ERROR = 0x9,
  ENHANCE_YOUR_CALM = 0xb,
}

/** The largest frame we take: the protocol's default, which we do not raise. */
const MAX_FRAME_SIZE = 16384;
/** The most encoded header block bytes one request may send across HEADERS and CONTINUATION. */
const MAX_HEADER_BLOCK = 256 * 1024;
const MAX_WINDOW = 2 ** 31 - 1;
const DEFAULT_WINDOW = 65535;
/** Room for a whole 16 MiB request on the connection, given back as requests are taken. */
const CONNECTION_WINDOW = 16 * 1024 * 1024;
const STREAM_WINDOW = 1024 * 1024;
const MAX_CONCURRENT_STREAMS = 1024;

const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;
const SETTINGS_ENABLE_PUSH = 0x2;

export class ConnectionError extends Error {
  constructor(
    readonly code: H2Error,
    message: string,
  ) {
    super(message);
  }
}

/** What the application gets of a stream: its request body and its end. */
export interface StreamHandler {
  /** A piece of the request body; `end` once the client closed its side. */
  onData(chunk: Buffer, end: boolean): void;
  /** The stream is gone (client RST_STREAM, connection closed): never answer it. */
  onReset(): void;
}

export type RequestListener = (stream: H2Stream, headers: HeaderField[], endStream: boolean) => void;

function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const h = Buffer.allocUnsafe(9);
  h[0] = length >>> 16;
  h[1] = (length >>> 8) & 0xff;
  h[2] = length & 0xff;
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return h;
}

/** RST_STREAM and WINDOW_UPDATE: one 32-bit value. */
function u32Frame(type: number, stream: number, value: number): Buffer {
  const out = Buffer.allocUnsafe(13);
  out[0] = 0;
  out[1] = 0;
  out[2] = 4;
  out[3] = type;
  out[4] = 0;
  out.writeUInt32BE(stream, 5);
  out.writeUInt32BE(value, 9);
  return out;
}

function goawayFrame(lastStream: number, code: H2Error, debug: string): Buffer {
  const data = Buffer.from(debug, 'utf8');
  const out = Buffer.allocUnsafe(17 + data.length);
  frameHeader(8 + data.length, Type.GOAWAY, 0, 0).copy(out);
  out.writeUInt32BE(lastStream, 9);
  out.writeUInt32BE(code, 13);
  data.copy(out, 17);
  return out;
}

export class H2Stream {
  /** What we may still send before the client's next WINDOW_UPDATE. */
  sendWindow: number;
  recvWindow = STREAM_WINDOW;
  recvUnacked = 0;
  remoteClosed = false;
  /** We sent END_STREAM or RST_STREAM, or the client reset it: nothing more goes out. */
  localClosed = false;
  /** DATA not yet sent for want of window. */
  pending: Buffer[] = [];
  pendingBytes = 0;
  /** Trailers to go once `pending` is out. */
  trailers: Buffer | undefined;
  /** Senders waiting for `pending` to go out. */
  waiters: (() => void)[] = [];
  handler: StreamHandler | undefined;

  constructor(
    readonly connection: H2Connection,
    readonly id: number,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }
}

interface OpenBlock {
  stream: number;
  endStream: boolean;
  fragments: Buffer[];
  size: number;
}

export class H2Connection {
  readonly streams = new Map<number, H2Stream>();
  /** The highest stream id the client opened. */
  private lastStream = 0;
  private readonly decoder = new HpackDecoder(4096, MAX_HEADER_BLOCK);
  private prefaceSeen = 0;
  private settingsSeen = false;
  private leftover: Buffer | undefined;
  private block: OpenBlock | undefined;
  private connSendWindow = DEFAULT_WINDOW;
  private connRecvWindow = CONNECTION_WINDOW;
  private connRecvUnacked = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = MAX_FRAME_SIZE;
  /** Streams holding DATA for want of window, in the order they blocked. */
  private readonly blocked = new Set<H2Stream>();
  private out: Buffer[] = [];
  private outBytes = 0;
  /**
   * From the client's bytes until the end of that event-loop turn, writes
   * wait and go out as one: the PING and SETTINGS ACKs with the answers
   * that handlers give from memory in the same turn. grpc-go pings after
   * each answer it receives (its BDP estimate); an ACK of its own would
   * cost both processes a wakeup per call.
   */
  private processing = false;
  /** Senders whose data went out, waiting for the socket to drain. */
  private drainWaiters: (() => void)[] = [];
  private drainListening = false;
  /** We sent GOAWAY: no new streams; the connection ends with its last stream. */
  private goingAway = false;
  private peerGoneAway = false;
  closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly onRequest: RequestListener,
    private readonly onError: (err: ConnectionError) => void,
  ) {
    const settings = Buffer.allocUnsafe(24);
    [
      [SETTINGS_ENABLE_PUSH, 0],
      [SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS],
      [SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW],
      [SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK],
    ].forEach(([id, value], i) => {
      settings.writeUInt16BE(id!, i * 6);
      settings.writeUInt32BE(value!, i * 6 + 2);
    });
    this.push(frameHeader(settings.length, Type.SETTINGS, 0, 0), settings, u32Frame(Type.WINDOW_UPDATE, 0, CONNECTION_WINDOW - DEFAULT_WINDOW));
    this.flush();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.onClose());
  }

  // ---- reading ----

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    // Already processing: an earlier chunk of this turn scheduled the write.
    const scheduled = this.processing;
    this.processing = true;
    try {
      this.read(chunk);
    } catch (err) {
      if (!(err instanceof ConnectionError)) throw err;
      this.processing = false;
      return this.fail(err);
    }
    if (scheduled) return;
    // After this turn's microtasks, in which handlers answering from memory settle.
    setImmediate(() => {
      this.processing = false;
      this.writeOut();
    });
  }

  private read(chunk: Buffer): void {
    let buf = this.leftover ? Buffer.concat([this.leftover, chunk]) : chunk;
    this.leftover = undefined;
    let off = 0;
    if (this.prefaceSeen < PREFACE.length) {
      const take = Math.min(PREFACE.length - this.prefaceSeen, buf.length);
      if (buf.compare(PREFACE, this.prefaceSeen, this.prefaceSeen + take, 0, take) !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'not an HTTP/2 client: bad connection preface');
      this.prefaceSeen += take;
      off = take;
    }
    while (buf.length - off >= 9 && !this.closed) {
      const length = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
      if (length > MAX_FRAME_SIZE) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds SETTINGS_MAX_FRAME_SIZE ${MAX_FRAME_SIZE}`);
      if (buf.length - off - 9 < length) break;
      const type = buf[off + 3]!;
      const flags = buf[off + 4]!;
      const stream = buf.readUInt32BE(off + 5) & 0x7fffffff;
      const payload = buf.subarray(off + 9, off + 9 + length);
      off += 9 + length;
      this.frame(type, flags, stream, payload);
    }
    if (off < buf.length) this.leftover = buf.subarray(off);
  }

  private frame(type: number, flags: number, id: number, payload: Buffer): void {
    if (!this.settingsSeen && type !== Type.SETTINGS) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `the client's first frame is type ${type}, not SETTINGS`);
    if (this.block && (type !== Type.CONTINUATION || id !== this.block.stream)) {
      throw new ConnectionError(H2Error.PROTOCOL_ERROR, `expected CONTINUATION on stream ${this.block.stream}, got frame type ${type} on stream ${id}`);
    }
    switch (type) {
      case Type.DATA:
        return this.onDataFrame(flags, id, payload);
      case Type.HEADERS:
        return this.onHeaders(flags, id, payload);
      case Type.CONTINUATION:
        if (!this.block) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `CONTINUATION on stream ${id} without an open header block`);
        return this.addFragment(payload, flags);
      case Type.PRIORITY:
        if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (payload.length !== 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `PRIORITY frame of ${payload.length} bytes, not 5`);
        return;
      case Type.RST_STREAM:
        return this.onRstStream(id, payload);
      case Type.SETTINGS:
        return this.onSettings(flags, id, payload);
      case Type.PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case Type.PING:
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `PING on stream ${id}`);
        if (payload.length !== 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `PING frame of ${payload.length} bytes, not 8`);
        if (!(flags & Flag.ACK)) this.push(frameHeader(8, Type.PING, Flag.ACK, 0), Buffer.from(payload));
        return;
      case Type.GOAWAY:
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `GOAWAY on stream ${id}`);
        if (payload.length < 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `GOAWAY frame of ${payload.length} bytes`);
        this.peerGoneAway = true;
        return this.endIfIdle();
      case Type.WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      default:
        // Unknown frame types and extensions are ignored (RFC 9113 §4.1).
        return;
    }
  }

  private onDataFrame(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    this.connRecvWindow -= payload.length;
    if (this.connRecvWindow < 0) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    this.connRecvUnacked += payload.length;
    if (this.connRecvUnacked >= CONNECTION_WINDOW / 4) {
      this.push(u32Frame(Type.WINDOW_UPDATE, 0, this.connRecvUnacked));
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
    }
    let data = payload;
    if (flags & Flag.PADDED) {
      const padding = payload.length > 0 ? payload[0]! : 0;
      if (payload.length === 0 || padding >= payload.length) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `DATA on stream ${id}: padding longer than the frame`);
      data = payload.subarray(1, payload.length - padding);
    }
    const s = this.streams.get(id);
    if (!s) {
      if (id > this.lastStream) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `DATA on idle stream ${id}`);
      // A stream we closed or reset: the client may not know yet.
      return;
    }
    if (s.remoteClosed) return this.resetStream(s, H2Error.STREAM_CLOSED);
    s.recvWindow -= payload.length;
    if (s.recvWindow < 0) return this.resetStream(s, H2Error.FLOW_CONTROL_ERROR);
    const end = (flags & Flag.END_STREAM) !== 0;
    if (end) s.remoteClosed = true;
    else {
      s.recvUnacked += payload.length;
      if (s.recvUnacked >= STREAM_WINDOW / 2) {
        this.push(u32Frame(Type.WINDOW_UPDATE, id, s.recvUnacked));
        s.recvWindow += s.recvUnacked;
        s.recvUnacked = 0;
      }
    }
    s.handler?.onData(data, end);
  }

  private onHeaders(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let start = 0;
    let padding = 0;
    if (flags & Flag.PADDED) {
      if (payload.length < 1) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PADDED HEADERS frame without a pad length');
      padding = payload[0]!;
      start = 1;
    }
    if (flags & Flag.PRIORITY) {
      if (payload.length - start < 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PRIORITY HEADERS frame too short');
      start += 5;
    }
    if (padding > payload.length - start) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
    this.block = { stream: id, endStream: (flags & Flag.END_STREAM) !== 0, fragments: [], size: 0 };
    this.addFragment(payload.subarray(start, payload.length - padding), flags);
  }

  private addFragment(fragment: Buffer, flags: number): void {
    const block = this.block!;
    block.fragments.push(fragment);
    block.size += fragment.length;
    if (block.size > MAX_HEADER_BLOCK) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `header block larger than ${MAX_HEADER_BLOCK} bytes`);
    if (!(flags & Flag.END_HEADERS)) return;
    this.block = undefined;
    let fields: HeaderField[];
    try {
      // Every block is decoded, also of streams refused below: the HPACK table is the connection's.
      fields = this.decoder.decode(block.fragments.length === 1 ? block.fragments[0]! : Buffer.concat(block.fragments));
    } catch (err) {
      if (err instanceof HpackError) throw new ConnectionError(H2Error.COMPRESSION_ERROR, `stream ${block.stream}: ${err.message}`);
      throw err;
    }
    this.headerBlock(block.stream, block.endStream, fields);
  }

  private headerBlock(id: number, endStream: boolean, fields: HeaderField[]): void {
    const existing = this.streams.get(id);
    if (existing) {
      // Trailers from the client: gRPC has none to read, but they end its side.
      if (existing.remoteClosed) return this.resetStream(existing, H2Error.STREAM_CLOSED);
      if (!endStream) return this.resetStream(existing, H2Error.PROTOCOL_ERROR);
      existing.remoteClosed = true;
      return existing.handler?.onData(Buffer.alloc(0), true);
    }
    if (id % 2 === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `stream ${id} is even: clients open odd streams`);
    if (id <= this.lastStream) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `HEADERS opening stream ${id}, not above the last stream ${this.lastStream}`);
    this.lastStream = id;
    if (this.goingAway || this.streams.size >= MAX_CONCURRENT_STREAMS) {
      this.push(u32Frame(Type.RST_STREAM, id, H2Error.REFUSED_STREAM));
      return;
    }
    const s = new H2Stream(this, id, this.peerInitialWindow);
    s.remoteClosed = endStream;
    this.streams.set(id, s);
    this.onRequest(s, fields, endStream);
  }

  private onRstStream(id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `RST_STREAM frame of ${payload.length} bytes, not 4`);
    if (id > this.lastStream) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `RST_STREAM on idle stream ${id}`);
    const s = this.streams.get(id);
    if (s) this.dropStream(s);
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `SETTINGS on stream ${id}`);
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `SETTINGS frame of ${payload.length} bytes, not a multiple of 6`);
    this.settingsSeen = true;
    for (let p = 0; p < payload.length; p += 6) {
      const setting = payload.readUInt16BE(p);
      const value = payload.readUInt32BE(p + 2);
      if (setting === SETTINGS_ENABLE_PUSH && value > 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value}`);
      if (setting === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value} above 2^31-1`);
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, `stream ${s.id} window above 2^31-1`);
        }
      } else if (setting === SETTINGS_MAX_FRAME_SIZE) {
        if (value < 16384 || value > 16777215) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value} out of range`);
        this.peerMaxFrame = value;
      }
      // HEADER_TABLE_SIZE bounds a table our encoder never uses; the rest need nothing of us.
    }
    this.push(frameHeader(0, Type.SETTINGS, Flag.ACK, 0));
    this.flushBlocked();
  }

  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `WINDOW_UPDATE frame of ${payload.length} bytes, not 4`);
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (increment === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
      this.connSendWindow += increment;
      if (this.connSendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      return this.flushBlocked();
    }
    const s = this.streams.get(id);
    if (!s) {
      if (id > this.lastStream) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${id}`);
      return;
    }
    if (increment === 0) return this.resetStream(s, H2Error.PROTOCOL_ERROR);
    s.sendWindow += increment;
    if (s.sendWindow > MAX_WINDOW) return this.resetStream(s, H2Error.FLOW_CONTROL_ERROR);
    this.flushStream(s);
  }

  // ---- writing ----

  /**
   * Queues a stream's answer: `headers` (a header block, before anything
   * else), `data` (flow-controlled) and `trailers` (a header block ending the
   * stream, after the data). Returns whether all of it went to the socket.
   */
  write(s: H2Stream, headers: Buffer | undefined, data: Buffer[] | undefined, trailers: Buffer | undefined): boolean {
    if (s.localClosed || this.closed) return true;
    if (headers) this.headerFrames(s.id, headers, false);
    if (data) {
      for (const d of data) {
        s.pending.push(d);
        s.pendingBytes += d.length;
      }
    }
    if (trailers) s.trailers = trailers;
    this.flushStream(s);
    this.flush();
    return s.pendingBytes === 0 && !this.socket.writableNeedDrain;
  }

  /** Resolves once the stream's queued data went out and the socket has room (or the stream is gone). */
  writable(s: H2Stream): Promise<void> {
    return new Promise((resolve) => {
      if (s.localClosed || this.closed) resolve();
      else if (s.pendingBytes > 0) s.waiters.push(resolve);
      else this.afterDrain(resolve);
    });
  }

  /** Abandons a stream from our side (RST_STREAM with `code`). */
  resetStream(s: H2Stream, code: H2Error): void {
    if (!s.localClosed) this.push(u32Frame(Type.RST_STREAM, s.id, code));
    this.dropStream(s);
    this.flush();
  }

  /** Sends GOAWAY: no new streams; the connection ends once its streams have. */
  goAway(): void {
    if (this.goingAway || this.closed) return;
    this.goingAway = true;
    this.push(goawayFrame(this.lastStream, H2Error.NO_ERROR, 'server shutting down'));
    this.flush();
    this.endIfIdle();
  }

  /** Closes the socket at once if streams are still open (one already ending is left to flush). */
  destroy(): void {
    if (!this.closed) this.socket.destroy();
  }

  private headerFrames(id: number, block: Buffer, endStream: boolean): void {
    const end = endStream ? Flag.END_STREAM : 0;
    if (block.length <= this.peerMaxFrame) {
      this.push(frameHeader(block.length, Type.HEADERS, end | Flag.END_HEADERS, id), block);
      return;
    }
    for (let pos = 0; pos < block.length; pos += this.peerMaxFrame) {
      const part = block.subarray(pos, pos + this.peerMaxFrame);
      const last = pos + this.peerMaxFrame >= block.length ? Flag.END_HEADERS : 0;
      this.push(frameHeader(part.length, pos === 0 ? Type.HEADERS : Type.CONTINUATION, (pos === 0 ? end : 0) | last, id), part);
    }
  }

  private flushStream(s: H2Stream): void {
    while (s.pendingBytes > 0) {
      const room = Math.min(this.connSendWindow, s.sendWindow, this.peerMaxFrame);
      if (room <= 0) break;
      const n = Math.min(room, s.pendingBytes);
      this.push(frameHeader(n, Type.DATA, 0, s.id));
      for (let left = n; left > 0; ) {
        const b = s.pending[0]!;
        if (b.length <= left) {
          this.push(b);
          s.pending.shift();
          left -= b.length;
        } else {
          this.push(b.subarray(0, left));
          s.pending[0] = b.subarray(left);
          left = 0;
        }
      }
      s.pendingBytes -= n;
      this.connSendWindow -= n;
      s.sendWindow -= n;
    }
    if (s.pendingBytes > 0) {
      this.blocked.add(s);
      return;
    }
    this.blocked.delete(s);
    if (s.trailers) {
      this.headerFrames(s.id, s.trailers, true);
      s.trailers = undefined;
      this.ended(s);
    }
    if (s.waiters.length > 0) {
      for (const w of s.waiters) this.afterDrain(w);
      s.waiters = [];
    }
  }

  private flushBlocked(): void {
    for (const s of this.blocked) {
      if (this.connSendWindow <= 0) break;
      this.flushStream(s);
    }
  }

  /** We sent END_STREAM: a client still sending is told to stop (RFC 9113 §8.1), and the stream is done. */
  private ended(s: H2Stream): void {
    if (!s.remoteClosed) this.push(u32Frame(Type.RST_STREAM, s.id, H2Error.NO_ERROR));
    s.localClosed = true;
    this.streams.delete(s.id);
    this.endIfIdle();
  }

  private dropStream(s: H2Stream): void {
    const wasOpen = !s.localClosed;
    s.localClosed = true;
    s.remoteClosed = true;
    s.pending = [];
    s.pendingBytes = 0;
    s.trailers = undefined;
    this.blocked.delete(s);
    this.streams.delete(s.id);
    for (const w of s.waiters) w();
    s.waiters = [];
    if (wasOpen) s.handler?.onReset();
    this.endIfIdle();
  }

  private endIfIdle(): void {
    if ((this.goingAway || this.peerGoneAway) && this.streams.size === 0 && !this.closed) {
      this.writeOut();
      this.closed = true;
      this.socket.end();
    }
  }

  private push(...bufs: Buffer[]): void {
    for (const b of bufs) {
      this.out.push(b);
      this.outBytes += b.length;
    }
  }

  /** Writes what is queued, unless a batch (the client's bytes being read) is still filling. */
  private flush(): void {
    if (!this.processing) this.writeOut();
  }

  /** Everything queued, in one socket write (small) or one corked run of writes (large, not copied). */
  private writeOut(): void {
    if (this.out.length > 0 && this.socket.writable) this.send();
    if (this.drainWaiters.length > 0) this.checkDrain();
  }

  private send(): void {
    const out = this.out;
    if (out.length === 1) this.socket.write(out[0]);
    else if (this.outBytes <= 65536) this.socket.write(Buffer.concat(out, this.outBytes));
    else {
      this.socket.cork();
      for (const b of out) this.socket.write(b);
      this.socket.uncork();
    }
    this.out = [];
    this.outBytes = 0;
  }

  private afterDrain(resolve: () => void): void {
    this.drainWaiters.push(resolve);
    if (!this.processing) this.checkDrain();
  }

  private checkDrain(): void {
    if (this.closed || !this.socket.writableNeedDrain) return this.releaseDrainWaiters();
    if (!this.drainListening) {
      this.drainListening = true;
      this.socket.once('drain', () => {
        this.drainListening = false;
        this.releaseDrainWaiters();
      });
    }
  }

  private releaseDrainWaiters(): void {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const fn of w) fn();
  }

  /** A connection error: what was answered so far, a GOAWAY naming the error, then the socket ends; every stream is reset. */
  private fail(err: ConnectionError): void {
    this.onError(err);
    this.push(goawayFrame(this.lastStream, err.code, err.message));
    this.writeOut();
    this.socket.end();
    this.onClose();
  }

  private onClose(): void {
    if (this.closed && this.streams.size === 0 && this.drainWaiters.length === 0) return;
    this.closed = true;
    for (const s of [...this.streams.values()]) this.dropStream(s);
    this.releaseDrainWaiters();
  }
}

