/**
 * The audit log for security teams: one JSON line per request that runs
 * something in a container or opens a way into a pod (Exec, ExecSync,
 * Attach, PortForward), with who it targets, what was asked and how it
 * ended. For Exec, Attach and PortForward the record is of the request that
 * hands out the streaming URL (the session itself runs on the stream server).
 */
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';
import type { Logger } from '../cri-api/logger.js';
import { grpcCodeName } from './metrics.js';

export interface AuditRecord {
  /** ISO 8601, UTC. */
  time: string;
  rpc: string;
  pod: { id: string; name: string; namespace: string };
  container?: { id: string; name: string };
  cmd?: string[];
  ports?: number[];
  tty?: boolean;
  stdin?: boolean;
  /** kubelet's id of the request (Exec, Attach), to join with the API server's audit log. */
  audit_request_id?: string;
  /** ExecSync's exit code is part of an ok outcome. */
  outcome: { ok: true; exit_code?: number } | { ok: false; code: string; message: string };
}

export interface AuditLogOptions {
  /** Called with the number of records a failed write lost (the daemon counts them in its metrics). */
  onWriteFailure?: (records: number) => void;
}

/** A record waiting for the next batch; `done` settles once it is on disk (or known lost). */
interface Pending {
  line: string;
  done: () => void;
}

/**
 * An append-only JSON-lines file. Records written while a batch is being
 * synced form the next batch: one write and one fdatasync per batch, so a
 * record whose write() resolved survives a crash of the daemon or the node,
 * and a burst of calls costs one sync, not one each. After logrotate moved
 * or removed the file (seen as a new inode or none at the path, or told by
 * SIGHUP through reopen()) the next batch goes to a fresh file at the path.
 */
export class AuditLog {
  private file: FileHandle | undefined;
  private ino = -1;
  private reopenAsked = false;
  private pending: Pending[] = [];
  private flushing: Promise<void> | undefined;

  private constructor(
    private readonly path: string,
    private readonly logger: Logger,
    private readonly opts: AuditLogOptions,
  ) {}

  /** Opens (creates, appends to) `path`; an empty path gives a log that records nothing. */
  static async open(path: string, logger: Logger, opts: AuditLogOptions = {}): Promise<AuditLog> {
    const log = new AuditLog(path, logger, opts);
    if (path === '') return log;
    if (!isAbsolute(path)) throw new Error(`audit-log: must be an absolute path or empty, got "${path}"`);
    try {
      await log.openFile();
    } catch (err) {
      throw new Error(`audit-log: open ${path}: ${(err as Error).message}`);
    }
    return log;
  }

  get enabled(): boolean {
    return this.path !== '';
  }

  /**
   * Appends one line; records keep their order. Resolves once the record is
   * synced to disk. A failed write is logged and counted, never thrown at the
   * caller: an audit problem must not fail the audited call.
   */
  write(record: AuditRecord): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return new Promise((resolve) => {
      this.pending.push({ line: `${JSON.stringify(record)}\n`, done: resolve });
      this.kick();
    });
  }

  /** Reopens the file before the next record (SIGHUP after logrotate). */
  reopen(): void {
    this.reopenAsked = true;
  }

  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    await this.file?.close();
    this.file = undefined;
  }

  private kick(): void {
    if (this.flushing) return;
    this.flushing = this.flush().finally(() => {
      this.flushing = undefined;
      if (this.pending.length > 0) this.kick();
    });
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      try {
        const file = await this.currentFile();
        await file.appendFile(batch.map((p) => p.line).join(''));
        await file.datasync();
      } catch (err) {
        this.logger.error({ err, path: this.path, records: batch.length }, 'writing the audit log failed: records lost');
        this.opts.onWriteFailure?.(batch.length);
      }
      for (const p of batch) p.done();
    }
  }

  /** The open file, reopened first when asked to or when the path no longer names it (rotated away). */
  private async currentFile(): Promise<FileHandle> {
    let rotated = this.reopenAsked || this.file === undefined;
    if (!rotated) {
      try {
        rotated = (await stat(this.path)).ino !== this.ino;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        rotated = true;
      }
    }
    if (rotated) {
      this.reopenAsked = false;
      await this.file?.close().catch(() => undefined);
      this.file = undefined;
      await this.openFile();
      this.logger.info({ path: this.path }, 'audit log reopened');
    }
    return this.file!;
  }

  private async openFile(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o750 });
    const file = await open(this.path, 'a', 0o600);
    try {
      this.ino = (await file.stat()).ino;
    } catch (err) {
      await file.close();
      throw err;
    }
    this.file = file;
  }
}

/** The RPCs every call of which is audited. */
export const AUDITED_RPCS = ['Exec', 'ExecSync', 'Attach', 'PortForward'] as const;

/** The request fields the audit reads (Exec, ExecSync, Attach and PortForward requests all fit). */
interface AuditedRequest {
  container_id?: string;
  pod_sandbox_id?: string;
  cmd?: string[];
  port?: number[];
  tty?: boolean;
  stdin?: boolean;
  audit_request_id?: string;
}

/** Names of what a request targets, looked up at request time (ids alone mean little to a reader later). */
export interface AuditLookup {
  container(id: string): { id: string; name: string; sandboxId: string } | undefined;
  pod(id: string): { id: string; name: string; namespace: string } | undefined;
}

/** The record of one audited call, before its outcome is known. */
export function auditRecord(rpc: string, req: AuditedRequest, lookup: AuditLookup): Omit<AuditRecord, 'outcome'> {
  const c = req.container_id ? lookup.container(req.container_id) : undefined;
  const podId = c?.sandboxId ?? req.pod_sandbox_id ?? '';
  const p = podId ? lookup.pod(podId) : undefined;
  const rec: Omit<AuditRecord, 'outcome'> = {
    time: new Date().toISOString(),
    rpc,
    pod: { id: podId, name: p?.name ?? '', namespace: p?.namespace ?? '' },
  };
  if (req.container_id !== undefined) rec.container = { id: req.container_id, name: c?.name ?? '' };
  if (req.cmd !== undefined) rec.cmd = [...req.cmd];
  if (req.port !== undefined) rec.ports = [...req.port];
  if (req.tty !== undefined) rec.tty = req.tty;
  if (req.stdin !== undefined) rec.stdin = req.stdin;
  if (req.audit_request_id) rec.audit_request_id = req.audit_request_id;
  return rec;
}

type AnyHandler = (...args: never[]) => Promise<unknown>;

/**
 * Wraps the audited RPCs among `handlers` so every call leaves a record,
 * whatever its outcome; RPCs bound later are wrapped as soon as they appear here.
 */
export function auditHandlers<H extends object>(handlers: H, audit: AuditLog, lookup: AuditLookup): H {
  if (!audit.enabled) return handlers;
  const out: Record<string, AnyHandler> = { ...(handlers as Record<string, AnyHandler>) };
  for (const rpc of AUDITED_RPCS) {
    const h = out[rpc];
    if (!h) continue;
    out[rpc] = async (...args: never[]): Promise<unknown> => {
      const rec = auditRecord(rpc, args[0] as AuditedRequest, lookup);
      try {
        const res = await h(...args);
        const exit = (res as { exit_code?: unknown } | undefined)?.exit_code;
        await audit.write({ ...rec, outcome: typeof exit === 'number' ? { ok: true, exit_code: exit } : { ok: true } });
        return res;
      } catch (err) {
        await audit.write({ ...rec, outcome: { ok: false, code: grpcCodeName(err), message: err instanceof Error ? err.message : String(err) } });
        throw err;
      }
    };
  }
  return out as H;
}
