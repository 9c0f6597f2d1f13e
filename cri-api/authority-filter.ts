/**
 * Lets every CRI client through whatever `:authority` it sends.
 *
 * gRPC clients in Go that dial a unix socket by its path (kubelet up to 1.30,
 * crictl up to 1.31, every tool on those client libraries) and grpc-java's
 * unix-socket clients send the socket path as the HTTP/2 `:authority`. Node's
 * HTTP/2 layer (nghttp2), below grpc-js, resets any request whose authority
 * holds a `/`, is empty or is missing, so those clients could not make a single call;
 * containerd and CRI-O (Go servers) take any authority.
 *
 * This filter sits between the accepted socket and grpc-js. It reads the
 * client's frames, decodes every header block with the connection's HPACK
 * state, percent-encodes the octets of `:authority` (and `host`) that nghttp2
 * refuses (a request with no authority, or an empty one, gets `localhost`:
 * nghttp2 refuses those too), and re-encodes the block with literals
 * only, so the server's HPACK table is never used again and cannot drift
 * from the client's. Until a block needs such a change, blocks go through
 * as they came (the server's HPACK table is then the client's): a client
 * sending an acceptable authority costs a decode per request and no more.
 * Every other frame, and everything the server sends, passes through
 * untouched. A malformed frame or header block ends that connection
 * with a GOAWAY naming the error (ours, or nghttp2's for what it parses
 * itself), then closes it; other connections are not affected.
 */
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { encodeHeaders, HpackDecoder, HpackError, type HeaderField } from './hpack.js';
import type { Logger } from './logger.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER_LENGTH = 9;
const enum FrameType {
  HEADERS = 0x1,
  SETTINGS = 0x4,
  GOAWAY = 0x7,
  CONTINUATION = 0x9,
}
const enum Flag {
  END_STREAM = 0x1,
  ACK = 0x1,
  END_HEADERS = 0x4,
  PADDED = 0x8,
  PRIORITY = 0x20,
}
const SETTINGS_HEADER_TABLE_SIZE = 0x1;
/** Node's SETTINGS_MAX_FRAME_SIZE, which grpc-js keeps: the largest frame either side may send. */
const MAX_FRAME_SIZE = 16384;
/** The most encoded header block bytes one request may send across HEADERS and CONTINUATION. */
const MAX_HEADER_BLOCK = 256 * 1024;

export const enum H2Error {
  PROTOCOL_ERROR = 0x1,
  FRAME_SIZE_ERROR = 0x6,
  COMPRESSION_ERROR = 0x9,
  ENHANCE_YOUR_CALM = 0xb,
}

export class ConnectionError extends Error {
  constructor(
    readonly code: H2Error,
    message: string,
  ) {
    super(message);
  }
}

/** nghttp2's check_authority: RFC 3986 unreserved, sub-delims, `:`, `@`, `[`, `]` and `%`. */
const AUTHORITY_OCTET = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@[]%") AUTHORITY_OCTET[c.charCodeAt(0)] = 1;

/** An authority nghttp2 accepts: itself if it is one, else its refused octets percent-encoded; undefined for an empty one. */
export function acceptableAuthority(value: string): string | undefined {
  if (value === '') return undefined;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    out += AUTHORITY_OCTET[code] ? value[i] : `%${code.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** What a request without a usable authority is given: what grpc-go 1.62+ itself sends for unix sockets. */
const DEFAULT_AUTHORITY = 'localhost';

/**
 * The header list with `:authority` and `host` made acceptable to nghttp2. A
 * request left with neither (none sent, or empty) gets `localhost`, since
 * nghttp2 refuses a request without one; trailers (no `:method`) get nothing.
 * A list that needs no change is returned itself.
 */
export function rewriteAuthority(fields: HeaderField[]): HeaderField[] {
  const out: HeaderField[] = [];
  let hasAuthority = false;
  let isRequest = false;
  let changed = false;
  let pseudoEnd = 0;
  for (const field of fields) {
    if (field.name === ':method') isRequest = true;
    if (field.name === ':authority' || field.name === 'host') {
      const value = acceptableAuthority(field.value);
      changed ||= value !== field.value;
      if (value === undefined) continue;
      hasAuthority = true;
      out.push(value === field.value ? field : { ...field, value });
    } else {
      out.push(field);
    }
    if (field.name.startsWith(':')) pseudoEnd = out.length;
  }
  // Pseudo-headers must come before the others (RFC 9113 §8.3).
  if (isRequest && !hasAuthority) {
    out.splice(pseudoEnd, 0, { name: ':authority', value: DEFAULT_AUTHORITY, sensitive: false });
    changed = true;
  }
  return changed ? out : fields;
}

function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return h;
}

export function goawayFrame(lastStream: number, code: H2Error, debug: string): Buffer {
  const data = Buffer.from(debug, 'utf8');
  const payload = Buffer.allocUnsafe(8);
  payload.writeUInt32BE(lastStream & 0x7fffffff, 0);
  payload.writeUInt32BE(code, 4);
  return Buffer.concat([frameHeader(8 + data.length, FrameType.GOAWAY, 0, 0), payload, data]);
}

interface OpenBlock {
  stream: number;
  endStream: boolean;
  priority: Buffer | undefined;
  fragments: Buffer[];
  size: number;
  /** The block's frames as the client sent them. */
  frames: Buffer[];
}

/** Client-to-server bytes in, the same bytes out with header blocks made acceptable to nghttp2. */
export class InboundRewriter {
  readonly decoder = new HpackDecoder();
  /** The highest stream a request was passed on for (a GOAWAY names it). */
  lastStream = 0;
  private prefaceSeen = 0;
  /** Not an HTTP/2 client: its bytes go through as they are, for nghttp2 to refuse. */
  private passThrough = false;
  private readonly header = Buffer.alloc(FRAME_HEADER_LENGTH);
  private headerFill = 0;
  /** The frame being read; a header block's frame is collected whole (its header and payload), other frames pass. */
  private frame: { type: number; flags: number; stream: number; remaining: number; collected: { head: Buffer; payload: Buffer[] } | undefined } | undefined;
  private block: OpenBlock | undefined;
  /** No block was changed yet: the server's HPACK table is the client's, so unchanged blocks can go as they are. */
  private mirroring = true;

  /** Returns what to hand the server for this chunk; throws ConnectionError on a malformed frame or block. */
  process(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let off = 0;
    /** Start of the run of this chunk that goes through unchanged. */
    let run = 0;
    const flushRun = (end: number): void => {
      if (end > run) out.push(chunk.subarray(run, end));
      run = end;
    };
    while (off < chunk.length && !this.passThrough) {
      if (this.prefaceSeen < PREFACE.length) {
        const take = Math.min(PREFACE.length - this.prefaceSeen, chunk.length - off);
        if (!chunk.subarray(off, off + take).equals(PREFACE.subarray(this.prefaceSeen, this.prefaceSeen + take))) this.passThrough = true;
        this.prefaceSeen += take;
        off += take;
        continue;
      }
      if (!this.frame) {
        const headerStart = off;
        const carried = this.headerFill;
        const take = Math.min(FRAME_HEADER_LENGTH - carried, chunk.length - off);
        chunk.copy(this.header, carried, off, off + take);
        this.headerFill += take;
        off += take;
        if (this.headerFill < FRAME_HEADER_LENGTH) break;
        this.headerFill = 0;
        const length = this.header.readUIntBE(0, 3);
        const type = this.header[3]!;
        const stream = this.header.readUInt32BE(5) & 0x7fffffff;
        const isHeaderBlock = type === FrameType.HEADERS || type === FrameType.CONTINUATION;
        this.checkOrder(type, stream);
        if (isHeaderBlock) {
          if (length > MAX_FRAME_SIZE) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `header frame of ${length} bytes exceeds ${MAX_FRAME_SIZE}`);
          // Everything before it goes on; the frame itself is held until its block is whole.
          flushRun(headerStart);
          run = off;
        } else if (carried > 0) {
          // This frame's header began in the last chunk, which held those bytes back.
          out.push(Buffer.from(this.header.subarray(0, carried)));
        }
        this.frame = { type, flags: this.header[4]!, stream, remaining: length, collected: isHeaderBlock ? { head: Buffer.from(this.header), payload: [] } : undefined };
      }
      const frame = this.frame;
      const take = Math.min(frame.remaining, chunk.length - off);
      frame.collected?.payload.push(chunk.subarray(off, off + take));
      off += take;
      frame.remaining -= take;
      if (frame.remaining > 0) break;
      this.frame = undefined;
      if (frame.collected) {
        out.push(...this.headerFrame(frame.type, frame.flags, frame.stream, frame.collected.head, Buffer.concat(frame.collected.payload)));
        run = off;
      }
    }
    // Held back: a header frame still being collected, and a frame header not yet whole.
    if (this.passThrough) flushRun(chunk.length);
    else if (!this.frame?.collected) flushRun(chunk.length - this.headerFill);
    return out;
  }

  /** A header block must be finished by CONTINUATION frames on its own stream before anything else. */
  private checkOrder(type: number, stream: number): void {
    if (this.block) {
      if (type !== FrameType.CONTINUATION || stream !== this.block.stream) {
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, `expected CONTINUATION on stream ${this.block.stream}, got frame type ${type} on stream ${stream}`);
      }
    } else if (type === FrameType.CONTINUATION) {
      throw new ConnectionError(H2Error.PROTOCOL_ERROR, `CONTINUATION on stream ${stream} without an open header block`);
    } else if (type === FrameType.HEADERS && stream === 0) {
      throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    }
  }

  private headerFrame(type: number, flags: number, stream: number, head: Buffer, payload: Buffer): Buffer[] {
    let fragment = payload;
    if (type === FrameType.HEADERS) {
      let start = 0;
      let padding = 0;
      if (flags & Flag.PADDED) {
        if (payload.length < 1) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PADDED HEADERS frame without a pad length');
        padding = payload[0]!;
        start = 1;
      }
      let priority: Buffer | undefined;
      if (flags & Flag.PRIORITY) {
        if (payload.length - start < 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PRIORITY HEADERS frame too short');
        priority = payload.subarray(start, start + 5);
        start += 5;
      }
      if (padding > payload.length - start) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
      fragment = payload.subarray(start, payload.length - padding);
      this.block = { stream, endStream: (flags & Flag.END_STREAM) !== 0, priority, fragments: [], size: 0, frames: [] };
    }
    const block = this.block!;
    block.frames.push(head, payload);
    block.fragments.push(fragment);
    block.size += fragment.length;
    if (block.size > MAX_HEADER_BLOCK) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `header block larger than ${MAX_HEADER_BLOCK} bytes`);
    if (!(flags & Flag.END_HEADERS)) return [];
    this.block = undefined;
    let fields: HeaderField[];
    try {
      fields = this.decoder.decode(Buffer.concat(block.fragments));
    } catch (err) {
      if (err instanceof HpackError) throw new ConnectionError(H2Error.COMPRESSION_ERROR, `stream ${block.stream}: ${err.message}`);
      throw err;
    }
    if (block.stream > this.lastStream) this.lastStream = block.stream;
    const rewritten = rewriteAuthority(fields);
    if (this.mirroring && rewritten === fields) return block.frames;
    this.mirroring = false;
    return this.frames(block, encodeHeaders(rewritten));
  }

  /** The re-encoded block as HEADERS (with the client's priority) and as many CONTINUATION frames as it needs. */
  private frames(block: OpenBlock, encoded: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const firstRoom = MAX_FRAME_SIZE - (block.priority ? 5 : 0);
    const first = encoded.subarray(0, firstRoom);
    let flags = (block.endStream ? Flag.END_STREAM : 0) | (block.priority ? Flag.PRIORITY : 0);
    if (encoded.length <= firstRoom) flags |= Flag.END_HEADERS;
    out.push(frameHeader(first.length + (block.priority ? 5 : 0), FrameType.HEADERS, flags, block.stream));
    if (block.priority) out.push(block.priority);
    out.push(first);
    for (let pos = firstRoom; pos < encoded.length; pos += MAX_FRAME_SIZE) {
      const part = encoded.subarray(pos, pos + MAX_FRAME_SIZE);
      const last = pos + MAX_FRAME_SIZE >= encoded.length;
      out.push(frameHeader(part.length, FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, block.stream), part);
    }
    return out;
  }
}

/**
 * Follows the server's frames (it never changes them): where they begin and
 * end, the header table size it announces, and whether it sent a GOAWAY for
 * an error, after which nghttp2 would leave the connection open for the
 * client to close.
 */
class OutboundTracker {
  private readonly header = Buffer.alloc(FRAME_HEADER_LENGTH);
  private headerFill = 0;
  private remaining = 0;
  private type = 0;
  private payload: Buffer[] | undefined;
  /** The server has ended the connection with an error: nothing more will be served on it. */
  goneAway = false;

  constructor(private readonly onHeaderTableSize: (size: number) => void) {}

  get atBoundary(): boolean {
    return this.headerFill === 0 && this.remaining === 0;
  }

  track(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.remaining === 0) {
        const take = Math.min(FRAME_HEADER_LENGTH - this.headerFill, chunk.length - off);
        chunk.copy(this.header, this.headerFill, off, off + take);
        this.headerFill += take;
        off += take;
        if (this.headerFill < FRAME_HEADER_LENGTH) return;
        this.headerFill = 0;
        this.remaining = this.header.readUIntBE(0, 3);
        this.type = this.header[3]!;
        const wanted = this.type === FrameType.GOAWAY || (this.type === FrameType.SETTINGS && !(this.header[4]! & Flag.ACK));
        this.payload = wanted ? [] : undefined;
        if (this.remaining > 0) continue;
      }
      const take = Math.min(this.remaining, chunk.length - off);
      this.payload?.push(chunk.subarray(off, off + take));
      off += take;
      this.remaining -= take;
      if (this.remaining === 0 && this.payload) this.frameDone(Buffer.concat(this.payload));
    }
  }

  private frameDone(payload: Buffer): void {
    this.payload = undefined;
    if (this.type === FrameType.GOAWAY) {
      if (payload.length >= 8 && payload.readUInt32BE(4) !== 0) this.goneAway = true;
      return;
    }
    for (let p = 0; p + 6 <= payload.length; p += 6) {
      if (payload.readUInt16BE(p) === SETTINGS_HEADER_TABLE_SIZE) this.onHeaderTableSize(payload.readUInt32BE(p + 2));
    }
  }
}

/**
 * Wraps an accepted client socket in a stream that grpc-js's HTTP/2 server
 * can take (`injectConnection`), filtering the client's header blocks.
 */
export function filterConnection(socket: Socket, logger: Logger): Duplex {
  const inbound = new InboundRewriter();
  const outbound = new OutboundTracker((size) => inbound.decoder.setLimit(size));
  let failed = false;

  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      send([chunk], callback);
    },
    writev(chunks, callback) {
      send(
        chunks.map((c) => c.chunk as Buffer),
        callback,
      );
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(err, callback) {
      if (!failed) socket.destroy();
      callback(err);
    },
  });

  /** Hands the server's frames to the client; done once the socket has taken them, as waiting for the flush would add a loop turn to every answer. */
  const send = (chunks: Buffer[], callback: () => void): void => {
    if (failed) return callback();
    socket.cork();
    let flowing = true;
    for (const chunk of chunks) {
      outbound.track(chunk);
      flowing = socket.write(chunk);
    }
    socket.uncork();
    if (outbound.goneAway && outbound.atBoundary) {
      // The server refused the connection (e.g. a bad frame it parsed itself): end it, as nghttp2 would leave it open.
      failed = true;
      socket.end();
      duplex.destroy();
      return callback();
    }
    if (flowing) callback();
    else socket.once('drain', callback);
  };

  const fail = (err: ConnectionError): void => {
    failed = true;
    socket.removeListener('data', onData);
    logger.warn({ err: err.message, h2Error: err.code }, 'closing a CRI connection: malformed HTTP/2 from the client');
    duplex.destroy();
    // A GOAWAY can only go between the server's frames; mid-frame, closing is all that is left.
    if (outbound.atBoundary) socket.end(goawayFrame(inbound.lastStream, err.code, err.message));
    else socket.destroy();
  };

  const onData = (chunk: Buffer): void => {
    let parts: Buffer[];
    try {
      parts = inbound.process(chunk);
    } catch (err) {
      if (err instanceof ConnectionError) return fail(err);
      throw err;
    }
    if (parts.length === 0) return;
    if (!duplex.push(parts.length === 1 ? parts[0] : Buffer.concat(parts))) socket.pause();
  };
  socket.on('data', onData);
  socket.on('end', () => duplex.push(null));
  socket.on('error', (err) => duplex.destroy(err));
  socket.on('close', () => duplex.destroy());
  return duplex;
}
