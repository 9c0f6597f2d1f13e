import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncPath, replaceFileAtomic, writeFileAtomic } from '../common/index.js';
import { CriError, GrpcStatus } from '../cri-api/errors.js';
import type { BulkBody } from './bulk-http.js';
import { checkDigest } from './manifest.js';

const WRITE_BATCH = 512 * 1024;
/** Written batch buffers kept for the next download: a fresh one costs a page fault per 4 KiB (about 10 µs each on our VM). */
const spareBatches: Buffer[] = [];
const MAX_SPARE_BATCHES = 8;

/** write until every byte is out (a regular file may take fewer bytes than asked). */
async function writeAll(fh: FileHandle, bytes: Buffer): Promise<void> {
  let rest = bytes;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.write(rest);
    rest = rest.subarray(bytesWritten);
  }
}

/**
 * Content-addressed blobs under `<root>/sha256/<hex>`. A blob becomes visible
 * only once its bytes hashed to its name: downloads go to a temp file first.
 *
 * A blob is synced to disk after it is in place, while the pull goes on
 * (its layer unpacks from the page cache), and durable() waits for those
 * syncs, and syncs the directory, before a record names the blob. A blob no
 * record names is removed when the store opens, so one a host crash left
 * half-written is never taken for whole.
 */
export class BlobStore {
  /** Syncs of blob files started and not finished. */
  private readonly syncing = new Map<string, Promise<void>>();
  /** Blobs renamed into place since the directory was last synced. */
  private readonly unsyncedNames = new Set<string>();

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
    await writeFileAtomic(this.path(digest), bytes, { durability: 'atomic', tmpDir: this.tmpDir });
    this.syncLater(digest);
  }

  /**
   * Waits until these blobs (those written since start) and their names are
   * on disk. The directory's sync makes every name renamed into it before
   * the sync durable, this call's or not: all of those are forgotten, so the
   * names of blobs a failed pull left (removed later by the collector) are
   * not kept until the daemon ends.
   */
  async durable(digests: readonly string[]): Promise<void> {
    await Promise.all(digests.map((d) => this.syncing.get(d)));
    if (!digests.some((d) => this.unsyncedNames.has(d))) return;
    const renamed = [...this.unsyncedNames];
    await fsyncPath(join(this.root, 'sha256'), 'r');
    for (const d of renamed) this.unsyncedNames.delete(d);
  }

  private syncLater(digest: string): void {
    this.unsyncedNames.add(digest);
    const path = this.path(digest);
    const sync = fsyncPath(path, 'r+').then(
      () => {
        this.syncing.delete(digest);
      },
      async (err: unknown) => {
        // Never leave a blob in place that may not be whole after a crash: the next pull fetches it again.
        await rm(path, { force: true });
        this.syncing.delete(digest);
        throw err;
      },
    );
    this.syncing.set(digest, sync);
    // Reported by durable(), to the pull that needs the blob.
    sync.catch(() => undefined);
  }

  /**
   * Drains `source` into the store, hashing on the way; on a size or digest
   * mismatch nothing is kept. `onBytes` sees every piece's length (progress).
   */
  async ingest(digest: string, expectedSize: number, source: BulkBody, what: string, onBytes: (n: number) => void): Promise<void> {
    const hash = createHash('sha256');
    let size = 0;
    await replaceFileAtomic(this.path(digest), async (tmp) => {
      const fh = await open(tmp, 'wx', 0o644);
      try {
        const batches = new BatchedWrites(fh);
        await source.drain((piece) => {
          size += piece.length;
          if (size > expectedSize) throw new CriError(GrpcStatus.DATA_LOSS, `${what}: registry sent more than the ${expectedSize} bytes the manifest declares`);
          hash.update(piece);
          onBytes(piece.length);
          return batches.add(piece);
        });
        await batches.finish();
        if (size !== expectedSize) throw new CriError(GrpcStatus.DATA_LOSS, `${what}: got ${size} bytes, the manifest declares ${expectedSize}`);
        const actual = `sha256:${hash.digest('hex')}`;
        if (actual !== digest) throw new CriError(GrpcStatus.DATA_LOSS, `${what}: downloaded content has digest ${actual}; the blob is corrupt at the registry or in transit`);
      } finally {
        await fh.close();
      }
    }, { durability: 'atomic', tmpDir: this.tmpDir });
    this.syncLater(digest);
  }
}

/**
 * A download's bytes gathered into WRITE_BATCH-sized buffers that go out one
 * write each (one threadpool round trip per batch, not per socket read). The
 * pieces it is given are only lent (bulk-http.ts), so they are copied; the
 * buffers are reused once written (by later downloads too), and add() asks
 * the sender to wait while two are queued.
 */
class BatchedWrites {
  private current: Buffer | undefined;
  private filled = 0;
  private queued = 0;
  private writing: Promise<void> = Promise.resolve();
  private failure: unknown;

  constructor(private readonly fh: FileHandle) {}

  add(piece: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    let at = 0;
    while (at < piece.length) {
      this.current ??= spareBatches.pop() ?? Buffer.allocUnsafeSlow(WRITE_BATCH);
      const n = piece.copy(this.current, this.filled, at);
      this.filled += n;
      at += n;
      if (this.filled === WRITE_BATCH) this.queue();
    }
    return this.queued >= 2 ? this.writing : undefined;
  }

  /** Writes what is left and waits for every write. */
  async finish(): Promise<void> {
    if (this.filled > 0) this.queue();
    await this.writing;
    if (this.failure) throw this.failure;
  }

  private queue(): void {
    const buf = this.current!;
    const bytes = this.filled;
    this.current = undefined;
    this.filled = 0;
    this.queued++;
    this.writing = this.writing.then(async () => {
      if (this.failure) return;
      try {
        await writeAll(this.fh, buf.subarray(0, bytes));
      } catch (err) {
        this.failure = err;
      }
      this.queued--;
      if (spareBatches.length < MAX_SPARE_BATCHES) spareBatches.push(buf);
    });
  }
}

