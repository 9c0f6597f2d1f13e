import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CriError, GrpcStatus } from '../cri-api/errors.js';
import { checkDigest } from './manifest.js';

const WRITE_BATCH = 1 << 20;

/**
 * Content-addressed blobs under `<root>/sha256/<hex>`. A blob becomes visible
 * only once its bytes hashed to its name: downloads go to a temp file first.
 */
export class BlobStore {
  constructor(
    private readonly root: string,
    private readonly tmpDir: string,
  ) {}

  async init(): Promise<void> {
    await mkdir(join(this.root, 'sha256'), { recursive: true });
  }

  path(digest: string): string {
    return join(this.root, 'sha256', checkDigest(digest));
  }

  async has(digest: string): Promise<boolean> {
    try {
      await stat(this.path(digest));
      return true;
    } catch {
      return false;
    }
  }

  async read(digest: string): Promise<Buffer> {
    return readFile(this.path(digest));
  }

  async size(digest: string): Promise<number> {
    return (await stat(this.path(digest))).size;
  }

  /** Stores bytes already in memory (manifests, configs) after checking them. */
  async putBytes(digest: string, bytes: Buffer, what: string): Promise<void> {
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== digest) throw new CriError(GrpcStatus.DATA_LOSS, `${what}: content has digest ${actual}, expected ${digest}`);
    const tmp = this.tmpPath();
    try {
      const fh = await open(tmp, 'wx', 0o644);
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path(digest));
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * Streams `source` into the store, hashing on the way; on a size or digest
   * mismatch nothing is kept. `onBytes` sees every chunk's length (progress).
   */
  async ingest(digest: string, expectedSize: number, source: NodeJS.ReadableStream, what: string, onBytes: (n: number) => void): Promise<void> {
    const hash = createHash('sha256');
    let size = 0;
    // Socket reads come in small chunks; writing each one costs a threadpool
    // round trip, so they are gathered into WRITE_BATCH-sized writes.
    let pending: Buffer[] = [];
    let pendingSize = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > expectedSize) {
          done(new CriError(GrpcStatus.DATA_LOSS, `${what}: registry sent more than the ${expectedSize} bytes the manifest declares`));
          return;
        }
        hash.update(chunk);
        onBytes(chunk.length);
        pending.push(chunk);
        pendingSize += chunk.length;
        if (pendingSize < WRITE_BATCH) {
          done();
          return;
        }
        const batch = Buffer.concat(pending, pendingSize);
        pending = [];
        pendingSize = 0;
        done(null, batch);
      },
      flush(done) {
        done(null, pendingSize > 0 ? Buffer.concat(pending, pendingSize) : undefined);
      },
    });
    const tmp = this.tmpPath();
    try {
      const out = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
      await pipeline(source, meter, out);
      if (size !== expectedSize) throw new CriError(GrpcStatus.DATA_LOSS, `${what}: got ${size} bytes, the manifest declares ${expectedSize}`);
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) throw new CriError(GrpcStatus.DATA_LOSS, `${what}: downloaded content has digest ${actual}; the blob is corrupt at the registry or in transit`);
      const fh = await open(tmp, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path(digest));
    } finally {
      await rm(tmp, { force: true });
    }
  }

  private tmpPath(): string {
    return join(this.tmpDir, `blob-${randomBytes(8).toString('hex')}`);
  }
}
