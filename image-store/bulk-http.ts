/**
 * HTTP/1.1 GET of a blob, read into one buffer the connection keeps.
 *
 * Node's sockets hand each read to JavaScript in a freshly allocated
 * buffer. For a body of many MiB those allocations (and the garbage and
 * page faults behind them) cost about 1.2 ms of CPU per MiB on our 2-core
 * VM, more than hashing the bytes, in a pull that is bound by CPU. Read
 * with `onread` into one kept buffer, the same body costs about 0.15 ms
 * per MiB. The caller takes each piece while it is valid (BulkBody.drain),
 * or reads the body as a plain stream of copies (error bodies, redirects).
 *
 * One request per connection (Connection: close): blobs are large, and a
 * pool of connections would win back only a handshake per blob.
 */
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';

/** A read takes up to this much at once; the kernel usually has less. */
const READ_BUFFER_BYTES = 128 * 1024;
/** Status line and headers: registries send a few hundred bytes. */
const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size or trailer line of a chunked body. */
const MAX_LINE_BYTES = 4096;
/** Headers node's client keeps once (the first), where others repeat as a list. */
const SINGLE_HEADERS = new Set(['content-type', 'content-length', 'location', 'etag', 'last-modified', 'server', 'date', 'retry-after']);

export interface BulkRequest {
  headers: Record<string, string>;
  /** https only: the CAs to trust; undefined trusts the system's. */
  secureContext?: tls.SecureContext;
  /** The request fails when the connection sees no traffic for this long. */
  idleTimeoutMs: number;
  idleError: () => Error;
  signal?: AbortSignal;
}

export interface BulkResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: BulkBody;
}

/** Takes body bytes that are valid only during the call; a promise asks for no more until it settles. */
export type BodyConsumer = (bytes: Buffer) => void | Promise<void>;

/** Connects, sends the GET, and resolves once the response's head is in; the body waits for a reader. */
export function bulkGet(url: URL, req: BulkRequest): Promise<BulkResponse> {
  return new Promise((resolve, reject) => {
    if (req.signal?.aborted) return reject(req.signal.reason);
    let request: string;
    try {
      request = requestText(url, req.headers);
    } catch (err) {
      return reject(err);
    }
    const exchange = new Exchange(resolve, reject);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const onread = { buffer, callback: (n: number): boolean => exchange.onRead(buffer.subarray(0, n)) };
    // tls.connect takes onread as net.connect does; @types/node does not declare it.
    const secure: tls.ConnectionOptions & { onread: net.OnReadOpts } = { host, port: Number(url.port || 443), servername: net.isIP(host) ? undefined : host, secureContext: req.secureContext, ALPNProtocols: ['http/1.1'], onread };
    const socket = url.protocol === 'https:' ? tls.connect(secure) : net.connect({ host, port: Number(url.port || 80), onread });
    exchange.attach(socket, req);
    socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => socket.write(request));
  });
}

function requestText(url: URL, headers: Record<string, string>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`, 'Connection: close'];
  for (const [name, value] of Object.entries(headers)) {
    // As node's client: a header must not smuggle in another.
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value)) throw new Error(`invalid header ${JSON.stringify(name)} in a request to ${url.host}`);
    lines.push(`${name}: ${value}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** One request on one connection: the head, then the body through its framing. */
class Exchange {
  private socket!: net.Socket;
  private head: Buffer = Buffer.alloc(0);
  private body: BulkBody | undefined;

  constructor(
    private readonly resolve: (r: BulkResponse) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  attach(socket: net.Socket, req: BulkRequest): void {
    this.socket = socket;
    socket.setTimeout(req.idleTimeoutMs, () => this.fail(req.idleError()));
    const onAbort = (): void => this.fail(req.signal!.reason instanceof Error ? req.signal!.reason : new Error(String(req.signal!.reason)));
    req.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('close', () => req.signal?.removeEventListener('abort', onAbort));
    socket.on('error', (err) => this.fail(err));
    socket.on('end', () => {
      if (this.body) this.body.onEnd();
      else this.fail(connectionClosed('before the response head'));
    });
  }

  /** `bytes` is the kept buffer's: it is overwritten by the next read. False pauses the socket. */
  onRead(bytes: Buffer): boolean {
    if (this.body) return this.body.onBytes(bytes);
    this.head = Buffer.concat([this.head, bytes]);
    for (;;) {
      const end = this.head.indexOf('\r\n\r\n');
      if (end < 0 && this.head.length > MAX_HEAD_BYTES) {
        this.fail(new Error(`response head over ${MAX_HEAD_BYTES} bytes`));
        return false;
      }
      if (end < 0) return true;
      let parsed: { status: number; headers: IncomingHttpHeaders };
      let frame: Framing;
      try {
        parsed = parseHead(this.head.subarray(0, end).toString('latin1'));
        frame = framing(parsed.status, parsed.headers);
      } catch (err) {
        this.fail(err as Error);
        return false;
      }
      const rest = this.head.subarray(end + 4);
      // An interim answer (100 Continue) precedes the real one.
      if (parsed.status >= 100 && parsed.status < 200) {
        this.head = Buffer.from(rest);
        continue;
      }
      this.head = Buffer.alloc(0);
      const body = new BulkBody(this.socket, frame);
      this.body = body;
      this.resolve({ ...parsed, body });
      // The rest is a copy (concat above): it waits, and the socket with it, until a reader chooses how to read.
      return body.onBytes(rest, true);
    }
  }

  private fail(err: Error): void {
    if (this.body) this.body.fail(err);
    else this.reject(err);
    this.socket.destroy();
  }
}

function connectionClosed(where: string): Error {
  return Object.assign(new Error(`connection closed ${where}`), { code: 'ECONNRESET' });
}

function parseHead(text: string): { status: number; headers: IncomingHttpHeaders } {
  const [statusLine, ...lines] = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine ?? '');
  if (!m) throw Object.assign(new Error(`not an HTTP/1.1 response: ${JSON.stringify((statusLine ?? '').slice(0, 80))}`), { code: 'HPE_INVALID_CONSTANT' });
  const headers: Record<string, string | string[]> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw Object.assign(new Error(`malformed response header ${JSON.stringify(line.slice(0, 80))}`), { code: 'HPE_INVALID_HEADER_TOKEN' });
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const had = headers[name];
    if (had === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(had)) had.push(value);
    else if (!SINGLE_HEADERS.has(name)) headers[name] = `${had}, ${value}`;
  }
  return { status: Number(m[1]), headers: headers as IncomingHttpHeaders };
}

/** Cuts a body out of the bytes of a connection; `feed` says whether the body is complete. */
interface Framing {
  feed(bytes: Buffer, emit: (piece: Buffer) => void): boolean;
  /** The connection ended: true if that ends the body, as it does one without a length. */
  endsAtClose: boolean;
  done: boolean;
}

function framing(status: number, headers: IncomingHttpHeaders): Framing {
  if (status === 204 || status === 304) return lengthFraming(0);
  if (/\bchunked\b/i.test(String(headers['transfer-encoding'] ?? ''))) return new ChunkedFraming();
  const length = headers['content-length'];
  if (length !== undefined) {
    if (!/^\d+$/.test(length)) throw Object.assign(new Error(`invalid content-length ${JSON.stringify(length)}`), { code: 'HPE_INVALID_CONTENT_LENGTH' });
    return lengthFraming(Number(length));
  }
  return { endsAtClose: true, done: false, feed: (bytes, emit) => (bytes.length > 0 && emit(bytes), false) };
}

function lengthFraming(length: number): Framing {
  let left = length;
  const f: Framing = {
    endsAtClose: false,
    done: length === 0,
    feed(bytes, emit) {
      const take = Math.min(left, bytes.length);
      if (take > 0) emit(bytes.subarray(0, take));
      left -= take;
      f.done = left === 0;
      return f.done;
    },
  };
  return f;
}

/** Transfer-Encoding: chunked (RFC 9112 §7.1): size lines, data, CRLF, and trailers after the last chunk. */
class ChunkedFraming implements Framing {
  readonly endsAtClose = false;
  done = false;
  private state: 'size' | 'data' | 'data-end' | 'trailer' = 'size';
  private line = '';
  private left = 0;

  feed(bytes: Buffer, emit: (piece: Buffer) => void): boolean {
    let i = 0;
    while (i < bytes.length && !this.done) {
      if (this.state === 'data') {
        const take = Math.min(this.left, bytes.length - i);
        emit(bytes.subarray(i, i + take));
        i += take;
        this.left -= take;
        if (this.left === 0) this.state = 'data-end';
        continue;
      }
      const nl = bytes.indexOf(0x0a, i);
      this.line += bytes.toString('latin1', i, nl < 0 ? bytes.length : nl);
      if (this.line.length > MAX_LINE_BYTES) throw Object.assign(new Error('chunked body: line too long'), { code: 'HPE_CHUNK_EXTENSIONS_OVERFLOW' });
      if (nl < 0) break;
      i = nl + 1;
      const line = this.line.replace(/\r$/, '');
      this.line = '';
      this.onLine(line);
    }
    return this.done;
  }

  private onLine(line: string): void {
    if (this.state === 'size') {
      const size = line.split(';')[0]!.trim();
      if (!/^[0-9a-fA-F]{1,12}$/.test(size)) throw Object.assign(new Error(`chunked body: invalid chunk size ${JSON.stringify(size.slice(0, 20))}`), { code: 'HPE_INVALID_CHUNK_SIZE' });
      this.left = Number.parseInt(size, 16);
      this.state = this.left === 0 ? 'trailer' : 'data';
    } else if (this.state === 'data-end') {
      if (line !== '') throw Object.assign(new Error('chunked body: no CRLF after a chunk'), { code: 'HPE_STRICT' });
      this.state = 'size';
    } else if (line === '') {
      this.done = true;
    }
  }
}

/**
 * A response body. Either drain() it (pieces valid only during each call:
 * no copy), or read it as a stream (each piece copied). Until one of them
 * starts, the connection is paused.
 */
export class BulkBody extends Readable {
  private consumer: BodyConsumer | undefined;
  private draining: { resolve(): void; reject(err: Error): void } | undefined;
  /** Copies that came with the head, before anyone read. */
  private held: Buffer[] = [];
  /** Promises of the consumer not settled yet: the socket stays paused until they do. */
  private waits: Promise<void>[] = [];
  private ended = false;
  private failure: Error | undefined;

  constructor(
    private readonly socket: net.Socket,
    private readonly framing: Framing,
  ) {
    super();
    if (framing.done) {
      this.ended = true;
      socket.destroy();
    }
  }

  /** Calls `consume` with every piece of the body; resolves when the body is complete. */
  drain(consume: BodyConsumer): Promise<void> {
    if (this.consumer || this.readableFlowing !== null) return Promise.reject(new Error('the body is already being read'));
    this.consumer = consume;
    return new Promise<void>((resolve, reject) => {
      this.draining = { resolve, reject };
      if (this.failure) return this.settle();
      const held = this.held;
      this.held = [];
      try {
        for (const piece of held) this.deliver(piece);
      } catch (err) {
        return this.fail(err as Error);
      }
      this.continueAfterWaits();
    });
  }

  override _read(): void {
    if (this.consumer) return;
    if (this.failure) {
      this.destroy(this.failure);
      return;
    }
    const held = this.held;
    this.held = [];
    for (const piece of held) this.push(piece);
    if (this.ended) this.push(null);
    else this.socket.resume();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }

  /** Bytes of the connection; `owned` ones are copies that may be kept. False pauses the socket. */
  onBytes(bytes: Buffer, owned = false): boolean {
    if (this.ended || this.failure) return false;
    try {
      this.framing.feed(bytes, (piece) => (this.consumer ? this.deliver(piece) : this.keep(owned ? piece : Buffer.from(piece))));
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    if (this.framing.done) {
      this.finish();
      return false;
    }
    // Nobody reads yet: paused until someone does. A stream reader: paused while its buffer is full.
    if (!this.consumer) return this.readableFlowing !== null && this.readableLength < this.readableHighWaterMark;
    if (this.waits.length === 0) return true;
    this.continueAfterWaits();
    return false;
  }

  onEnd(): void {
    if (this.ended || this.failure) return;
    if (this.framing.endsAtClose) this.finish();
    else this.fail(connectionClosed('before the body ended'));
  }

  fail(err: Error): void {
    if (this.ended || this.failure) return;
    this.failure = err;
    this.socket.destroy();
    if (this.draining) this.settle();
    // A body nobody reads yet fails its reader later (drain, _read), not as an 'error' no one listens to.
    else if (!this.consumer && this.readableFlowing !== null) this.destroy(err);
  }

  private deliver(piece: Buffer): void {
    const r = this.consumer!(piece);
    if (r) this.waits.push(r);
  }

  private keep(piece: Buffer): void {
    if (this.readableFlowing === null) this.held.push(piece);
    else this.push(piece);
  }

  private continueAfterWaits(): void {
    const waits = this.waits;
    this.waits = [];
    Promise.all(waits).then(
      () => {
        if (this.ended) this.settle();
        else if (!this.failure) this.socket.resume();
      },
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        // The body may be complete already, with only the consumer's last wait left.
        if (this.ended && !this.failure) {
          this.failure = e;
          this.settle();
        } else {
          this.fail(e);
        }
      },
    );
  }

  private finish(): void {
    this.ended = true;
    this.socket.destroy();
    if (this.draining) {
      if (this.waits.length > 0) this.continueAfterWaits();
      else this.settle();
    } else if (this.readableFlowing !== null) {
      this.push(null);
    }
  }

  private settle(): void {
    const d = this.draining;
    this.draining = undefined;
    if (!d) return;
    if (this.failure) d.reject(this.failure);
    else d.resolve();
  }
}
