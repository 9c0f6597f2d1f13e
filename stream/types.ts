// The data that crosses the stream module's boundary: what the CRI handlers
// cache, and what the runtime implements to actually run exec/attach/port-forward.

import type { Duplex, Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';

export interface ExecRequest {
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface AttachRequest {
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface PortForwardRequest {
  podSandboxId: string;
  /** Ports used by WebSocket clients, which name no port themselves; SPDY clients name the port per connection. */
  ports: number[];
}

export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * The client's streams as the backend sees them. Only the ones the request
 * asked for are present (stderr never with tty).
 */
export interface StreamIO {
  /** The client's input; ends when the client closes its stdin. */
  stdin?: Readable;
  /** Output to the client. The session ends it after the backend returns; ending it earlier is fine. */
  stdout?: Writable;
  stderr?: Writable;
  /** Terminal sizes in arrival order (tty only); ends when the client stops sending them. */
  resize?: AsyncIterable<TerminalSize>;
  /** Aborted when the client goes away or the server shuts down: stop the work then. */
  signal: AbortSignal;
}

/** Outcome of an exec: any exit code, including signals mapped to 128+n by the backend. */
export interface ExecResult {
  exitCode: number;
}

/**
 * What the runtime implements. A thrown Error's message reaches the client
 * (status on the error stream), so it should say what failed and where.
 */
export interface StreamBackend {
  /**
   * Runs cmd in the container wired to io and resolves once the process has
   * exited AND all its output was written to io.stdout/io.stderr.
   * A non-zero exitCode is reported to the client as NonZeroExitCode.
   */
  exec(req: ExecRequest, io: StreamIO): Promise<ExecResult>;
  /** Attaches io to the container's main process; resolves when it exits or io.signal aborts. */
  attach(req: AttachRequest, io: StreamIO): Promise<void>;
  /**
   * Copies bytes between conn and port in the sandbox's network namespace,
   * both directions, until either side closes; resolves when done. Rejects
   * (e.g. connection refused) to have the message written to the client's
   * error stream for this connection.
   */
  portForward(podSandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void>;
}

export interface StreamServerOptions {
  /** Address to bind; loopback by default in the daemon, since the token is the only authentication. */
  address: string;
  /** 0 picks a free port. */
  port: number;
  /** PEM text or a path to a PEM file; both or neither. */
  tlsCert?: string;
  tlsKey?: string;
  backend: StreamBackend;
  logger: Logger;
  /** How long a URL stays usable (default 60 000 ms). */
  tokenTtlMs?: number;
  /** URLs handed out but not yet used, at most (default 1000); beyond it RESOURCE_EXHAUSTED. */
  maxPendingRequests?: number;
  /** How long a client may take to open all its streams (default 30 000 ms). */
  streamCreationTimeoutMs?: number;
  /** A connection with no traffic for this long is closed (default 4 h). */
  idleTimeoutMs?: number;
  /** Sessions open at once (default 128); one more is refused with HTTP 429 before its token is used. */
  maxSessions?: number;
}
