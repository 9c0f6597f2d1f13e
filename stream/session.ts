// What every streaming session shares: the settings it runs with and the
// handle the server keeps to end it on shutdown.

import type { Logger } from 'pino';
import type { StreamBackend } from './types.js';

export interface SessionContext {
  backend: StreamBackend;
  logger: Logger;
  streamCreationTimeoutMs: number;
  idleTimeoutMs: number;
}

export interface Session {
  /** Settles when the client connection is gone. */
  readonly done: Promise<void>;
  /** Stops the backend work and ends the connection cleanly, within bounded time. */
  close(): Promise<void>;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
