/**
 * The audit log for security teams: one JSON line per request that runs
 * something in a container or opens a way into a pod (Exec, ExecSync,
 * Attach, PortForward), with who it targets, what was asked and how it
 * ended. For Exec, Attach and PortForward the record is of the request that
 * hands out the streaming URL (the session itself runs on the stream server).
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises';
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

export class AuditLog {
  private readonly file: FileHandle | undefined;
  private readonly logger: Logger;
  private tail: Promise<void> = Promise.resolve();

  private constructor(file: FileHandle | undefined, logger: Logger) {
    this.file = file;
    this.logger = logger;
  }

  /** Opens (creates, appends to) `path`; an empty path gives a log that records nothing. */
  static async open(path: string, logger: Logger): Promise<AuditLog> {
    if (path === '') return new AuditLog(undefined, logger);
    if (!isAbsolute(path)) throw new Error(`audit-log: must be an absolute path or empty, got "${path}"`);
    try {
      await mkdir(dirname(path), { recursive: true, mode: 0o750 });
      return new AuditLog(await open(path, 'a', 0o600), logger);
    } catch (err) {
      throw new Error(`audit-log: open ${path}: ${(err as Error).message}`);
    }
  }

  get enabled(): boolean {
    return this.file !== undefined;
  }

  /** Appends one line; records keep their order. A failed write is logged, never thrown at the caller. */
  write(record: AuditRecord): Promise<void> {
    const file = this.file;
    if (!file) return Promise.resolve();
    const line = `${JSON.stringify(record)}\n`;
    this.tail = this.tail.then(() => file.appendFile(line)).catch((err: unknown) => this.logger.error({ err, rpc: record.rpc }, 'writing the audit log failed'));
    return this.tail;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.file?.close();
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
