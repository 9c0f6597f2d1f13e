// Single-use URL tokens: the only authentication of the streaming server, so
// unguessable, short-lived, consumed by the first request, and bounded in number.

import { randomBytes } from 'node:crypto';
import { CriError, GrpcStatus } from '../cri-api/errors.js';
import type { AttachRequest, ExecRequest, PortForwardRequest } from './types.js';

export type CachedRequest =
  | { kind: 'exec'; req: ExecRequest }
  | { kind: 'attach'; req: AttachRequest }
  | { kind: 'portforward'; req: PortForwardRequest };

interface Entry { request: CachedRequest; expiresAt: number }

export class TokenCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly ttlMs: number, private readonly maxPending: number, private readonly now: () => number = Date.now) {}

  /** Stores the request under a fresh token. Throws RESOURCE_EXHAUSTED when too many are pending. */
  insert(request: CachedRequest): string {
    this.purgeExpired();
    if (this.entries.size >= this.maxPending) {
      throw new CriError(GrpcStatus.RESOURCE_EXHAUSTED, `streaming server: ${this.entries.size} ${request.kind} URLs already pending (limit ${this.maxPending}); retry once some are used or expire`);
    }
    const token = randomBytes(24).toString('base64url');
    this.entries.set(token, { request, expiresAt: this.now() + this.ttlMs });
    return token;
  }

  /** Removes the token whatever happens next; returns the request if it was live and of this kind. */
  consume(token: string, kind: CachedRequest['kind']): CachedRequest | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    if (entry.expiresAt <= this.now() || entry.request.kind !== kind) return undefined;
    return entry.request;
  }

  get size(): number {
    return this.entries.size;
  }

  private purgeExpired(): void {
    const now = this.now();
    for (const [token, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(token);
  }
}
