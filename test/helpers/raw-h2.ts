/**
 * A raw HTTP/2 client for wire-level tests of the CRI socket: the test builds
 * every frame and header block byte by byte (as grpc-go, grpc-java or a
 * broken client would send them) and reads back the server's frames.
 */
import { connect, type Socket } from 'node:net';
import { HpackDecoder, type HeaderField } from '../../cri-api/hpack.js';
import { loadCriProto } from '../../cri-api/server.js';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const HEADERS = 0x1;
export const DATA = 0x0;
export const PRIORITY_FRAME = 0x2;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const WINDOW_UPDATE = 0x8;
export const CONTINUATION = 0x9;
export const ACK = 0x1;
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;
export const PADDED = 0x8;
export const PRIORITY = 0x20;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** A SETTINGS payload from [identifier, value] pairs. */
export function settings(pairs: [number, number][]): Buffer {
  const out = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([id, value], i) => {
    out.writeUInt16BE(id, 6 * i);
    out.writeUInt32BE(value, 6 * i + 2);
  });
  return out;
}

/** A 32-bit payload: RST_STREAM's error code, WINDOW_UPDATE's increment. */
export function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

/** Builders for HPACK representations (RFC 7541 §6). */
export const hpack = {
  integer(value: number, prefixBits: number, firstByte: number): Buffer {
    const max = (1 << prefixBits) - 1;
    if (value < max) return Buffer.from([firstByte | value]);
    const out = [firstByte | max];
    let rest = value - max;
    while (rest >= 0x80) {
      out.push((rest & 0x7f) | 0x80);
      rest >>= 7;
    }
    out.push(rest);
    return Buffer.from(out);
  },
  /** A string literal; pass `huffman` with already Huffman-coded bytes. */
  string(value: string | Buffer, huffman = false): Buffer {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
    return Buffer.concat([hpack.integer(bytes.length, 7, huffman ? 0x80 : 0), bytes]);
  },
  indexed(index: number): Buffer {
    return hpack.integer(index, 7, 0x80);
  },
  /** Literal with incremental indexing: a static/dynamic name index, or a new name. */
  incremental(name: number | string, value: Buffer): Buffer {
    return typeof name === 'number' ? Buffer.concat([hpack.integer(name, 6, 0x40), value]) : Buffer.concat([Buffer.from([0x40]), hpack.string(name), value]);
  },
  /** Literal without indexing (or never indexed). */
  plain(name: number | string, value: Buffer, neverIndexed = false): Buffer {
    const first = neverIndexed ? 0x10 : 0;
    return typeof name === 'number' ? Buffer.concat([hpack.integer(name, 4, first), value]) : Buffer.concat([Buffer.from([first]), hpack.string(name), value]);
  },
  sizeUpdate(size: number): Buffer {
    return hpack.integer(size, 5, 0x20);
  },
};

/** `:method POST`, `:scheme http`, `:path` and the gRPC headers; the authority is the caller's. */
export function grpcRequestBlock(path: string, authority: Buffer[]): Buffer {
  return Buffer.concat([
    hpack.indexed(3),
    hpack.indexed(6),
    hpack.plain(4, hpack.string(path)),
    ...authority,
    hpack.plain('content-type', hpack.string('application/grpc')),
    hpack.plain('te', hpack.string('trailers')),
  ]);
}

/** One gRPC length-prefixed message. */
export function grpcMessage(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

const criProto = loadCriProto();
type Method = { requestSerialize(value: object): Buffer; responseDeserialize(bytes: Buffer): unknown };
const methods = {
  runtime: criProto.runtime.v1.RuntimeService.service as unknown as Record<string, Method>,
  image: criProto.runtime.v1.ImageService.service as unknown as Record<string, Method>,
};

/** The serialized request of a CRI RPC, as our proto encodes it. */
export function criRequest(service: 'runtime' | 'image', rpc: string, request: object): Buffer {
  return methods[service][rpc]!.requestSerialize(request);
}

export function criResponse<T>(service: 'runtime' | 'image', rpc: string, message: Buffer): T {
  return methods[service][rpc]!.responseDeserialize(message) as T;
}

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
  /** For HEADERS: the decoded header list (the server's HPACK state kept in order). */
  headers?: HeaderField[];
}

export interface GrpcResult {
  status: number;
  message: string;
  /** The gRPC messages of the answer, prefixes removed. */
  messages: Buffer[];
}

export class RawH2Connection {
  readonly frames: Frame[] = [];
  closed = false;
  private pending = Buffer.alloc(0);
  private readonly decoder = new HpackDecoder();
  private waiters = new Set<() => void>();

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(path: string): Promise<RawH2Connection> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(new RawH2Connection(s)));
      s.once('error', reject);
    });
  }

  /** The preface and an empty SETTINGS, as every client starts. */
  static async open(path: string): Promise<RawH2Connection> {
    const c = await RawH2Connection.connect(path);
    c.send(PREFACE, frame(SETTINGS, 0, 0));
    return c;
  }

  send(...bufs: Buffer[]): void {
    this.socket.write(Buffer.concat(bufs));
  }

  close(): void {
    this.socket.destroy();
  }

  /** Resolves once `ready` holds for what arrived so far; rejects after `timeoutMs`. */
  async waitFor(ready: () => boolean, what: string, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; frames so far: ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.add(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits for the end of a gRPC call on `stream` and returns its status and messages. */
  async result(stream: number, timeoutMs?: number): Promise<GrpcResult> {
    const ended = (): boolean => this.frames.some((f) => f.stream === stream && (f.type === RST_STREAM || (f.type === HEADERS && f.flags & END_STREAM)));
    await this.waitFor(() => ended() || this.closed, `the end of stream ${stream}`, timeoutMs);
    const trailers = this.frames.find((f) => f.stream === stream && f.type === HEADERS && f.flags & END_STREAM);
    // A server that answered before the request ended then resets the stream (RFC 9113 §8.1): the answer stands.
    const reset = this.frames.find((f) => f.stream === stream && f.type === RST_STREAM);
    if (reset && !trailers) throw new Error(`stream ${stream} reset with code ${reset.payload.readUInt32BE(0)}`);
    if (!trailers) throw new Error(`connection closed before stream ${stream} ended: ${this.describe()}`);
    const get = (name: string): string | undefined => trailers.headers!.find((h) => h.name === name)?.value;
    const data = Buffer.concat(this.frames.filter((f) => f.stream === stream && f.type === DATA).map((f) => f.payload));
    const messages: Buffer[] = [];
    for (let p = 0; p + 5 <= data.length; ) {
      const len = data.readUInt32BE(p + 1);
      messages.push(data.subarray(p + 5, p + 5 + len));
      p += 5 + len;
    }
    return { status: Number(get('grpc-status')), message: decodeURIComponent(get('grpc-message') ?? ''), messages };
  }

  goaway(): { lastStream: number; code: number; debug: string } | undefined {
    const f = this.frames.find((x) => x.type === GOAWAY);
    return f && { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4), debug: f.payload.subarray(8).toString() };
  }

  describe(): string {
    return this.frames.map((f) => `type ${f.type} flags ${f.flags} stream ${f.stream} len ${f.payload.length}`).join('; ') + (this.closed ? '; closed' : '');
  }

  private onData(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 9) {
      const len = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + len) break;
      const f: Frame = { type: this.pending[3]!, flags: this.pending[4]!, stream: this.pending.readUInt32BE(5) & 0x7fffffff, payload: this.pending.subarray(9, 9 + len) };
      // The server sends whole header blocks (END_HEADERS) with neither padding nor priority.
      if (f.type === HEADERS) f.headers = this.decoder.decode(f.payload);
      this.frames.push(f);
      this.pending = this.pending.subarray(9 + len);
    }
    this.wake();
  }

  private wake(): void {
    const w = [...this.waiters];
    this.waiters.clear();
    for (const fn of w) fn();
  }
}

