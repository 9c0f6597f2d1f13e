/**
 * What crosses the thread boundary between layer-unpacker.ts and its
 * workers. Apart from layer-unpacker.ts so that a worker does not load
 * what only the daemon's side needs (common/ pulls in execa: ~120 ms of
 * CPU at every worker start).
 */
import { CriError, type GrpcStatus } from '../cri-api/errors.js';
import { UnsafeLayerError } from './layer-apply.js';

export interface UnpackRequest {
  /** The snapshot tree to make (it must not exist yet). */
  root: string;
  /** The snapshot below, linked in first (linkTree); none for a bottom layer. */
  lower: string | undefined;
  blobPath: string;
  diffId: string;
  budget: number;
  limitBytes: number;
}

/** An error as it crosses the thread boundary: its class is what the puller maps to a gRPC status. */
export type UnpackFailure = { kind: 'unsafe'; message: string } | { kind: 'cri'; code: GrpcStatus; message: string } | { kind: 'other'; message: string; errno?: string };

export interface UnpackReply {
  /** Entries of types that cannot be made (device nodes, FIFOs), skipped. */
  skipped: { path: string; type: string }[];
  result: { ok: true; bytes: number } | { ok: false; error: UnpackFailure };
}

export function describeFailure(err: unknown): UnpackFailure {
  if (err instanceof UnsafeLayerError) return { kind: 'unsafe', message: err.message };
  if (err instanceof CriError) return { kind: 'cri', code: err.code, message: err.message };
  const errno = (err as NodeJS.ErrnoException).code;
  return { kind: 'other', message: err instanceof Error ? err.message : String(err), ...(typeof errno === 'string' ? { errno } : {}) };
}
