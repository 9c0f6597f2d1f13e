// SPDY/3.1 frames as moby/spdystream speaks them: an incremental parser for a
// TCP byte stream and an encoder. Header blocks stay compressed here; the
// zlib contexts live in header-compression.ts because they are connection state.

export const SPDY_VERSION = 3;

export const FrameType = {
  SYN_STREAM: 1,
  SYN_REPLY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  HEADERS: 8,
  WINDOW_UPDATE: 9,
} as const;

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;

export const RstStatus = {
  PROTOCOL_ERROR: 1,
  INVALID_STREAM: 2,
  REFUSED_STREAM: 3,
  CANCEL: 5,
  INTERNAL_ERROR: 6,
} as const;

export const GoAwayStatus = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;

/** Largest payload a frame's 24-bit length can carry. */
export const MAX_FRAME_PAYLOAD = 0xffffff;

export interface SettingsEntry { flags: number; id: number; value: number }

export type Frame =
  | { type: 'data'; streamId: number; flags: number; data: Buffer }
  | { type: 'syn_stream'; streamId: number; associatedId: number; priority: number; slot: number; flags: number; headerBlock: Buffer }
  | { type: 'syn_reply'; streamId: number; flags: number; headerBlock: Buffer }
  | { type: 'rst_stream'; streamId: number; flags: number; status: number }
  | { type: 'settings'; flags: number; entries: SettingsEntry[] }
  | { type: 'ping'; flags: number; id: number }
  | { type: 'goaway'; flags: number; lastGoodStreamId: number; status: number }
  | { type: 'headers'; streamId: number; flags: number; headerBlock: Buffer }
  | { type: 'window_update'; streamId: number; flags: number; delta: number }
  | { type: 'unknown'; frameType: number; flags: number; payload: Buffer };

/** A violation of the framing itself: the connection cannot continue. */
export class SpdyProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpdyProtocolError';
  }
}

const STREAM_ID_MASK = 0x7fffffff;

function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new RangeError(`SPDY control frame type ${type} payload of ${payload.length} bytes exceeds 24-bit length`);
  const head = Buffer.allocUnsafe(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(((flags & 0xff) << 24 | payload.length) >>> 0, 4);
  return Buffer.concat([head, payload]);
}

function u32s(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(values.length * 4);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
  return b;
}

/** The 8 bytes before a DATA frame's payload: written apart from it, the payload needs no copy. */
export function encodeDataHeader(streamId: number, flags: number, length: number): Buffer {
  if (length > MAX_FRAME_PAYLOAD) throw new RangeError(`SPDY data frame of ${length} bytes exceeds 24-bit length`);
  const head = Buffer.allocUnsafe(8);
  head.writeUInt32BE(streamId & STREAM_ID_MASK, 0);
  head.writeUInt32BE(((flags & 0xff) << 24 | length) >>> 0, 4);
  return head;
}

/** Serializes one frame. DATA payloads above 16 MiB must be split by the caller. */
export function encodeFrame(frame: Frame): Buffer {
  switch (frame.type) {
    case 'data':
      return Buffer.concat([encodeDataHeader(frame.streamId, frame.flags, frame.data.length), frame.data]);
    case 'syn_stream': {
      const fixed = Buffer.alloc(10);
      fixed.writeUInt32BE(frame.streamId & STREAM_ID_MASK, 0);
      fixed.writeUInt32BE(frame.associatedId & STREAM_ID_MASK, 4);
      fixed[8] = (frame.priority & 0x7) << 5;
      fixed[9] = frame.slot & 0xff;
      return controlFrame(FrameType.SYN_STREAM, frame.flags, Buffer.concat([fixed, frame.headerBlock]));
    }
    case 'syn_reply':
      return controlFrame(FrameType.SYN_REPLY, frame.flags, Buffer.concat([u32s(frame.streamId & STREAM_ID_MASK), frame.headerBlock]));
    case 'headers':
      return controlFrame(FrameType.HEADERS, frame.flags, Buffer.concat([u32s(frame.streamId & STREAM_ID_MASK), frame.headerBlock]));
    case 'rst_stream':
      return controlFrame(FrameType.RST_STREAM, frame.flags, u32s(frame.streamId & STREAM_ID_MASK, frame.status));
    case 'settings': {
      const body = Buffer.allocUnsafe(4 + frame.entries.length * 8);
      body.writeUInt32BE(frame.entries.length, 0);
      frame.entries.forEach((e, i) => {
        body.writeUInt32BE(((e.flags & 0xff) << 24 | (e.id & 0xffffff)) >>> 0, 4 + i * 8);
        body.writeUInt32BE(e.value >>> 0, 8 + i * 8);
      });
      return controlFrame(FrameType.SETTINGS, frame.flags, body);
    }
    case 'ping':
      return controlFrame(FrameType.PING, frame.flags, u32s(frame.id));
    case 'goaway':
      return controlFrame(FrameType.GOAWAY, frame.flags, u32s(frame.lastGoodStreamId & STREAM_ID_MASK, frame.status));
    case 'window_update':
      return controlFrame(FrameType.WINDOW_UPDATE, frame.flags, u32s(frame.streamId & STREAM_ID_MASK, frame.delta & STREAM_ID_MASK));
    case 'unknown':
      return controlFrame(frame.frameType, frame.flags, frame.payload);
  }
}

function need(payload: Buffer, min: number, what: string): void {
  if (payload.length < min) throw new SpdyProtocolError(`SPDY ${what} frame has ${payload.length} payload bytes, needs at least ${min}`);
}

function decodeControl(type: number, flags: number, p: Buffer): Frame {
  switch (type) {
    case FrameType.SYN_STREAM:
      need(p, 10, 'SYN_STREAM');
      return {
        type: 'syn_stream', flags,
        streamId: p.readUInt32BE(0) & STREAM_ID_MASK,
        associatedId: p.readUInt32BE(4) & STREAM_ID_MASK,
        priority: p[8]! >> 5,
        slot: p[9]!,
        headerBlock: p.subarray(10),
      };
    case FrameType.SYN_REPLY:
      need(p, 4, 'SYN_REPLY');
      return { type: 'syn_reply', flags, streamId: p.readUInt32BE(0) & STREAM_ID_MASK, headerBlock: p.subarray(4) };
    case FrameType.HEADERS:
      need(p, 4, 'HEADERS');
      return { type: 'headers', flags, streamId: p.readUInt32BE(0) & STREAM_ID_MASK, headerBlock: p.subarray(4) };
    case FrameType.RST_STREAM:
      need(p, 8, 'RST_STREAM');
      return { type: 'rst_stream', flags, streamId: p.readUInt32BE(0) & STREAM_ID_MASK, status: p.readUInt32BE(4) };
    case FrameType.SETTINGS: {
      need(p, 4, 'SETTINGS');
      const count = p.readUInt32BE(0);
      need(p, 4 + count * 8, 'SETTINGS');
      const entries: SettingsEntry[] = [];
      for (let i = 0; i < count; i++) {
        const word = p.readUInt32BE(4 + i * 8);
        entries.push({ flags: word >>> 24, id: word & 0xffffff, value: p.readUInt32BE(8 + i * 8) });
      }
      return { type: 'settings', flags, entries };
    }
    case FrameType.PING:
      need(p, 4, 'PING');
      return { type: 'ping', flags, id: p.readUInt32BE(0) };
    case FrameType.GOAWAY:
      need(p, 4, 'GOAWAY');
      // SPDY/2 GOAWAY had no status; tolerate its absence.
      return { type: 'goaway', flags, lastGoodStreamId: p.readUInt32BE(0) & STREAM_ID_MASK, status: p.length >= 8 ? p.readUInt32BE(4) : 0 };
    case FrameType.WINDOW_UPDATE:
      need(p, 8, 'WINDOW_UPDATE');
      return { type: 'window_update', flags, streamId: p.readUInt32BE(0) & STREAM_ID_MASK, delta: p.readUInt32BE(4) & STREAM_ID_MASK };
    default:
      return { type: 'unknown', frameType: type, flags, payload: p };
  }
}

/**
 * Cuts a byte stream into frames. Feed it every chunk the socket delivers, in
 * order; it keeps the incomplete tail until the rest arrives. Frames that lie
 * inside one chunk are views of it; only a frame cut by a chunk boundary is
 * copied, once, when its last byte arrives (bulk DATA at 100+ MB/s would
 * otherwise spend its time copying).
 */
export class FrameParser {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the next frame needs in total: its header, then header and payload. */
  private needed = 8;

  constructor(private readonly maxPayload: number = MAX_FRAME_PAYLOAD) {}

  /** Returns every frame completed by this chunk. Throws SpdyProtocolError on malformed input. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    const frames: Frame[] = [];
    while (this.pendingBytes >= this.needed) {
      if (this.pending[0]!.length < this.needed) this.joinFront(this.needed);
      const buf = this.pending[0]!;
      const used = this.parseWhole(buf, frames);
      this.pendingBytes -= used;
      if (used === buf.length) this.pending.shift();
      else this.pending[0] = buf.subarray(used);
    }
    return frames;
  }

  /** Bytes received that do not yet form a whole frame. */
  get buffered(): number {
    return this.pendingBytes;
  }

  /** Appends every whole frame at the start of buf to frames, sets what the next one needs, and returns the bytes used. */
  private parseWhole(buf: Buffer, frames: Frame[]): number {
    let off = 0;
    this.needed = 8;
    while (buf.length - off >= 8) {
      const word0 = buf.readUInt32BE(off);
      const word1 = buf.readUInt32BE(off + 4);
      const flags = word1 >>> 24;
      const length = word1 & 0xffffff;
      if (length > this.maxPayload) throw new SpdyProtocolError(`SPDY frame of ${length} bytes exceeds the limit of ${this.maxPayload}`);
      if (buf.length - off < 8 + length) {
        this.needed = 8 + length;
        break;
      }
      const payload = buf.subarray(off + 8, off + 8 + length);
      if (word0 & 0x80000000) {
        const version = (word0 >>> 16) & 0x7fff;
        if (version !== SPDY_VERSION) throw new SpdyProtocolError(`SPDY control frame has version ${version}, only ${SPDY_VERSION} is spoken`);
        frames.push(decodeControl(word0 & 0xffff, flags, payload));
      } else {
        frames.push({ type: 'data', streamId: word0 & STREAM_ID_MASK, flags, data: payload });
      }
      off += 8 + length;
    }
    return off;
  }

  /** Makes the first pending buffer n bytes long by copying just those n bytes out of the first buffers. */
  private joinFront(n: number): void {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < n) {
      const next = this.pending.shift()!;
      const take = Math.min(next.length, n - have);
      parts.push(take === next.length ? next : next.subarray(0, take));
      if (take < next.length) this.pending.unshift(next.subarray(take));
      have += take;
    }
    this.pending.unshift(Buffer.concat(parts, n));
  }
}

/** SPDY header names are lowercase; several values of one name are joined by NUL. */
export type SpdyHeaders = Record<string, string[]>;

/** Builds an uncompressed header block. Names must be lowercase and unique (spdystream dies otherwise). */
export function encodeHeaderBlock(headers: SpdyHeaders): Buffer {
  const parts: Buffer[] = [];
  const names = Object.keys(headers);
  parts.push(u32s(names.length));
  for (const name of names) {
    if (name !== name.toLowerCase() || name.length === 0) throw new RangeError(`SPDY header name ${JSON.stringify(name)} must be non-empty lowercase`);
    const n = Buffer.from(name, 'utf8');
    const v = Buffer.from(headers[name]!.join('\0'), 'utf8');
    parts.push(u32s(n.length), n, u32s(v.length), v);
  }
  return Buffer.concat(parts);
}

/** Parses an uncompressed header block. Names are lowercased (clients should send them so anyway). */
export function decodeHeaderBlock(block: Buffer): SpdyHeaders {
  const headers: SpdyHeaders = {};
  const fail = (why: string): never => { throw new SpdyProtocolError(`malformed SPDY header block: ${why}`); };
  if (block.length < 4) fail(`${block.length} bytes, no pair count`);
  const count = block.readUInt32BE(0);
  let off = 4;
  const field = (what: string): string => {
    if (block.length - off < 4) fail(`truncated ${what} length`);
    const len = block.readUInt32BE(off);
    off += 4;
    if (block.length - off < len) fail(`truncated ${what}`);
    const s = block.toString('utf8', off, off + len);
    off += len;
    return s;
  };
  for (let i = 0; i < count; i++) {
    const name = field('name').toLowerCase();
    const value = field('value');
    if (name.length === 0) fail('empty header name');
    if (Object.hasOwn(headers, name)) fail(`duplicate header ${JSON.stringify(name)}`);
    headers[name] = value.split('\0');
  }
  return headers;
}

/** First value of a header, or undefined. */
export function headerValue(headers: SpdyHeaders, name: string): string | undefined {
  return headers[name.toLowerCase()]?.[0];
}
