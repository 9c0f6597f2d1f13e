// SPDY/3 header compression: one zlib stream per direction for the whole
// connection, primed with the SPDY/3 dictionary, each block ended by a
// Z_SYNC_FLUSH. Node's zlib streams are asynchronous and its synchronous
// helpers close their context after one call, so the inflating context
// serializes its blocks through a promise chain: results come back strictly
// in call order. Outgoing blocks are not compressed at all (see HeaderCompressor).

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

  constructor(private readonly z: zlib.Inflate, private readonly what: string) {
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

/** zlib header: deflate, 32 KiB window, a preset dictionary (FDICT), then the SPDY/3 dictionary's Adler-32. */
const ZLIB_HEADER = Buffer.from('78f9e3c6a7c2', 'hex');
/** A stored block's length field is 16 bits. */
const MAX_STORED = 0xffff;
/** The empty stored block a Z_SYNC_FLUSH ends with. */
const SYNC_FLUSH = Buffer.from('000000ffff', 'hex');

/**
 * Writes this side's outgoing header blocks as stored (uncompressed) deflate
 * blocks of one zlib stream, each ended as a Z_SYNC_FLUSH ends it: what any
 * SPDY peer's inflater reads, made at once on the event loop. Deflating
 * went through zlib's thread: one round trip between threads per SYN_REPLY,
 * which a client creating its streams one after another waited for each
 * time, to save a few dozen bytes of a frame on loopback.
 */
export class HeaderCompressor {
  private started = false;

  compress(block: Buffer): Promise<Buffer> {
    const parts: Buffer[] = [];
    if (!this.started) parts.push(ZLIB_HEADER);
    this.started = true;
    for (let at = 0; at < block.length; at += MAX_STORED) {
      const piece = block.subarray(at, at + MAX_STORED);
      const head = Buffer.alloc(5);
      // BFINAL 0, BTYPE 00 (stored), padded to the byte boundary; then LEN and its one's complement.
      head.writeUInt16LE(piece.length, 1);
      head.writeUInt16LE(~piece.length & 0xffff, 3);
      parts.push(head, piece);
    }
    parts.push(SYNC_FLUSH);
    return Promise.resolve(Buffer.concat(parts));
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
