import { open, stat, type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ContainerStatusResponse__Output } from '../cri-api/generated/runtime/v1/ContainerStatusResponse.js';
import type { Command, Ctx } from './command.js';
import { CtlError, grpcCode, usageError } from './client.js';
import { intFlag } from './args.js';
import { resolveContainer } from './resolve.js';
import { lastLines, splitRecords, type LogRecord } from './cri-log-reader.js';
import * as grpc from '@grpc/grpc-js';

const POLL_MS = 100;
const STATE_POLL_MS = 500;
/** After the container exits, lines the runtime still flushes are read until the file stays quiet this long. */
const QUIET_AFTER_EXIT_MS = 300;
const MAX_AFTER_EXIT_MS = 3000;

function write(records: LogRecord[]): void {
  for (const r of records) {
    const dest = r.stream === 'stdout' ? process.stdout : process.stderr;
    dest.write(r.partial ? r.content : Buffer.concat([r.content, Buffer.from('\n')]));
  }
}

/** A log file read incrementally, following kubelet's rotation (rename, then ReopenContainerLog creates a new file). */
class Follower {
  private carry: Buffer = Buffer.alloc(0);
  private constructor(private readonly path: string, private fh: FileHandle, private ino: number, private pos: number) {}

  static async open(path: string, what: string): Promise<Follower> {
    const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
      throw new CtlError(`${what}: open log file ${path}: ${err.code ?? err.message}`);
    });
    return new Follower(path, fh, (await fh.stat()).ino, 0);
  }

  /** Everything complete that was appended since the last read. */
  async read(): Promise<LogRecord[]> {
    const chunks: Buffer[] = [this.carry];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, this.pos);
      if (bytesRead === 0) break;
      this.pos += bytesRead;
      chunks.push(Buffer.from(buf.subarray(0, bytesRead)));
    }
    const { records, carry } = splitRecords(Buffer.concat(chunks));
    this.carry = carry;
    return records;
  }

  /** Switches to the file now at the path if it was rotated or truncated; resolves true if it did. */
  async reopenIfRotated(): Promise<boolean> {
    const st = await stat(this.path).catch(() => undefined);
    // Between kubelet's rename and the reopen the path is missing: keep the old file.
    if (!st) return false;
    if (st.ino === this.ino && st.size >= this.pos) return false;
    await this.fh.close();
    this.fh = await open(this.path, 'r');
    this.ino = (await this.fh.stat()).ino;
    this.pos = 0;
    this.carry = Buffer.alloc(0);
    return true;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

async function stillRunning(ctx: Ctx, id: string): Promise<boolean> {
  const client = ctx.client();
  try {
    const res = await client.call<ContainerStatusResponse__Output>(`logs ${id}: container status`, (o, cb) => client.runtime.ContainerStatus({ container_id: id }, o, cb));
    return res.status?.state === 'CONTAINER_RUNNING' || res.status?.state === 'CONTAINER_CREATED';
  } catch (err) {
    if (err instanceof CtlError && grpcCode(err) === grpc.status.NOT_FOUND) return false;
    throw err;
  }
}

async function follow(ctx: Ctx, id: string, f: Follower): Promise<void> {
  let lastStateCheck = 0;
  let exitedAt: number | undefined;
  let lastData = Date.now();
  for (;;) {
    // Drain the current file before looking for a newer one, so no line between the two is lost.
    let records = await f.read();
    if (records.length === 0 && (await f.reopenIfRotated())) records = await f.read();
    if (records.length > 0) {
      write(records);
      lastData = Date.now();
    }
    const now = Date.now();
    if (exitedAt === undefined && now - lastStateCheck >= STATE_POLL_MS) {
      lastStateCheck = now;
      if (!(await stillRunning(ctx, id))) exitedAt = Date.now();
    }
    if (exitedAt !== undefined && (now - lastData >= QUIET_AFTER_EXIT_MS || now - exitedAt >= MAX_AFTER_EXIT_MS)) return;
    await sleep(POLL_MS);
  }
}

export const logs: Command = {
  name: 'logs',
  usage: 'logs [-f] [--tail N] CONTAINER',
  summary: "print a container's log (stdout to stdout, stderr to stderr); -f follows until it exits",
  flags: [{ name: 'follow', short: 'f' }, { name: 'tail', value: true }],
  async run(ctx, args) {
    if (args.positionals.length !== 1) throw usageError('logs takes exactly one CONTAINER');
    const tail = args.flags.has('tail') ? intFlag(args, 'tail', 0) : undefined;
    const client = ctx.client();
    const c = await resolveContainer(client, args.positionals[0]!);
    const what = `logs ${c.id}`;
    const st = await client.call<ContainerStatusResponse__Output>(`${what}: container status`, (o, cb) => client.runtime.ContainerStatus({ container_id: c.id }, o, cb));
    const path = st.status?.log_path ?? '';
    if (path === '') throw new CtlError(`${what}: the container has no log file (its pod has no log_directory or the container no log_path)`);
    const f = await Follower.open(path, what);
    try {
      const first = await f.read();
      write(tail === undefined ? first : lastLines(first, tail));
      if (args.flags.has('follow')) await follow(ctx, c.id, f);
    } finally {
      await f.close();
    }
    return 0;
  },
};
