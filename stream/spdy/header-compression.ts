// SPDY/3 header compression: one zlib stream per direction for the whole
// connection, primed with the SPDY/3 dictionary, each block ended by a
// Z_SYNC_FLUSH. Node's zlib streams are asynchronous and its synchronous
// helpers close their context after one call, so each context serializes its
// blocks through a promise chain: results come back strictly in call order.

import zlib from 'node:zlib';
import { SPDY3_DICTIONARY } from './dictionary.js';
import { SpdyProtocolError } from './frames.js';

/** A decompressed header block larger than this is treated as an attack. */
const MAX_HEADER_BLOCK = 1 << 20;

class ZlibContext {
  private chunks: Buffer[] = [];
  private size = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private failure: SpdyProtocolError | undefined;
  private failCurrent: ((err: Error) => void) | undefined;

  constructor(private readonly z: zlib.Deflate | zlib.Inflate, private readonly what: string) {
    // Paused mode, drained by hand: a 'data' listener can receive a block's
    // last bytes after the flush callback (when output was buffered), which
    // cut blocks in two and left SYN_STREAMs unanswered under load.
    z.on('readable', () => this.drain());
    // A corrupt input errors the stream and its flush callback never runs: fail the waiting call here.
    z.on('error', (err: Error) => this.fail(this.wrap(err)));
  }

  process(input: Buffer): Promise<Buffer> {
    const run = (): Promise<Buffer> => new Promise((resolve, reject) => {
      if (this.failure) { reject(this.failure); return; }
      this.failCurrent = reject;
      this.z.write(input);
      this.z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        this.failCurrent = undefined;
        // Everything this flush produced is in the readable buffer by now.
        this.drain();
        const out = Buffer.concat(this.chunks, this.size);
        this.chunks = [];
        this.size = 0;
        if (this.failure) reject(this.failure);
        else resolve(out);
      });
    });
    const result = this.tail.then(run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.z.close();
  }

  private drain(): void {
    if (this.failure) return;
    for (let c: Buffer | null = this.z.read() as Buffer | null; c !== null; c = this.z.read() as Buffer | null) {
      this.size += c.length;
      if (this.size > MAX_HEADER_BLOCK) {
        // A zlib bomb: closing the stream stops zlib at its next output chunk,
        // instead of inflating gigabytes only to throw them away. The
        // context is shared by the whole connection, which dies with it.
        this.fail(new SpdyProtocolError(`SPDY header block ${this.what} inflates to more than the ${MAX_HEADER_BLOCK}-byte limit`));
        this.z.close();
        return;
      }
      this.chunks.push(c);
    }
  }

  /** Fails the block in progress and every later one. */
  private fail(err: SpdyProtocolError): void {
    this.failure ??= err;
    this.chunks = [];
    this.size = 0;
    this.failCurrent?.(this.failure);
    this.failCurrent = undefined;
  }

  private wrap(err: Error): SpdyProtocolError {
    return new SpdyProtocolError(`SPDY header block ${this.what} failed: ${err.message}`);
  }
}

/** Compresses this side's outgoing header blocks. */
export class HeaderCompressor {
  private readonly ctx = new ZlibContext(zlib.createDeflate({ level: 9, dictionary: SPDY3_DICTIONARY }), 'compression');

  compress(block: Buffer): Promise<Buffer> {
    return this.ctx.process(block);
  }

  close(): void {
    this.ctx.close();
  }
}

/** Decompresses the peer's incoming header blocks. */
export class HeaderDecompressor {
  private readonly ctx = new ZlibContext(zlib.createInflate({ dictionary: SPDY3_DICTIONARY }), 'decompression');

  decompress(block: Buffer): Promise<Buffer> {
    return this.ctx.process(block);
  }

  close(): void {
    this.ctx.close();
  }
}
