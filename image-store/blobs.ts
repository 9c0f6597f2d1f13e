import { createHash } from 'node:crypto';
import { mkdir, open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { replaceFileAtomic, writeFileAtomic } from '../common/index.js';
import { CriError, GrpcStatus } from '../cri-api/errors.js';
import { checkDigest } from './manifest.js';

const WRITE_BATCH = 1 << 20;

/** writev until every byte is out (a regular file may take fewer bytes than asked). */
async function writevAll(fh: FileHandle, chunks: Buffer[]): Promise<void> {
  let rest = chunks;
  while (rest.length > 0) {
    let { bytesWritten } = await fh.writev(rest);
    while (rest.length > 0 && bytesWritten >= rest[0].length) {
      bytesWritten -= rest[0].length;
      rest = rest.slice(1);
    }
    if (bytesWritten > 0) rest = [rest[0].subarray(bytesWritten), ...rest.slice(1)];
  }
}

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
    await writeFileAtomic(this.path(digest), bytes, { durability: 'durable', tmpDir: this.tmpDir });
  }

  /**
   * Streams `source` into the store, hashing on the way; on a size or digest
   * mismatch nothing is kept. `onBytes` sees every chunk's length (progress).
   */
  async ingest(digest: string, expectedSize: number, source: NodeJS.ReadableStream, what: string, onBytes: (n: number) => void): Promise<void> {
    const hash = createHash('sha256');
    let size = 0;
    await replaceFileAtomic(this.path(digest), async (tmp) => {
      const fh = await open(tmp, 'wx', 0o644);
      try {
        // Socket reads come in small chunks; writing each one costs a
        // threadpool round trip, so they go out WRITE_BATCH bytes per writev.
        let pending: Buffer[] = [];
        let pendingSize = 0;
        const flush = async (): Promise<void> => {
          const batch = pending;
          pending = [];
          pendingSize = 0;
          await writevAll(fh, batch);
        };
        const sink = new Writable({
          write(chunk: Buffer, _enc, done) {
            size += chunk.length;
            if (size > expectedSize) {
              done(new CriError(GrpcStatus.DATA_LOSS, `${what}: registry sent more than the ${expectedSize} bytes the manifest declares`));
              return;
            }
            hash.update(chunk);
            onBytes(chunk.length);
            pending.push(chunk);
            pendingSize += chunk.length;
            if (pendingSize < WRITE_BATCH) done();
            else flush().then(() => done(), done);
          },
          final(done) {
            flush().then(() => done(), done);
          },
        });
        await pipeline(source, sink);
        if (size !== expectedSize) throw new CriError(GrpcStatus.DATA_LOSS, `${what}: got ${size} bytes, the manifest declares ${expectedSize}`);
        const actual = `sha256:${hash.digest('hex')}`;
        if (actual !== digest) throw new CriError(GrpcStatus.DATA_LOSS, `${what}: downloaded content has digest ${actual}; the blob is corrupt at the registry or in transit`);
      } finally {
        await fh.close();
      }
    }, { durability: 'durable', tmpDir: this.tmpDir });
  }
}
