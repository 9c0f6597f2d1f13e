// Port-forward over SPDY (portforward.k8s.io): every forwarded connection is
// a pair of client streams, error and data, sharing a port and requestid.

import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { SpdyConnection, type SpdyStream } from './spdy/connection.js';
import { RstStatus, headerValue } from './spdy/frames.js';
import { errorMessage, type Session, type SessionContext } from './session.js';
import type { PortForwardRequest } from './types.js';

interface StreamPair {
  port: number;
  error?: SpdyStream;
  data?: SpdyStream;
  timer: NodeJS.Timeout;
}

/** A port header value as a port number, or undefined unless it is 1-65535. */
export function parsePort(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,5}$/.test(value)) return undefined;
  const port = Number(value);
  return port >= 1 && port <= 65535 ? port : undefined;
}

export class SpdyPortForwardSession implements Session {
  readonly done: Promise<void>;
  private readonly conn: SpdyConnection;
  private readonly abort = new AbortController();
  private readonly pairs = new Map<string, StreamPair>();
  private readonly logger: Logger;

  constructor(socket: Duplex, head: Buffer, private readonly req: PortForwardRequest, private readonly ctx: SessionContext) {
    this.logger = ctx.logger.child({ session: 'portforward', podSandboxId: req.podSandboxId });
    this.conn = new SpdyConnection(socket, { role: 'server', head, idleTimeoutMs: ctx.idleTimeoutMs, logger: this.logger, onStream: (s) => this.onStream(s) });
    this.done = this.conn.closed.then(() => {
      this.abort.abort(new Error('client connection closed'));
      for (const pair of this.pairs.values()) clearTimeout(pair.timer);
      this.pairs.clear();
    });
  }

  close(): Promise<void> {
    this.abort.abort(new Error('streaming server shutting down'));
    return this.conn.shutdown();
  }

  private onStream(stream: SpdyStream): void {
    const type = headerValue(stream.headers, 'streamtype')?.toLowerCase();
    const port = parsePort(headerValue(stream.headers, 'port'));
    if ((type !== 'error' && type !== 'data') || port === undefined) {
      this.logger.debug({ streamType: type, port: headerValue(stream.headers, 'port') }, 'rejecting port-forward stream with bad headers');
      stream.reset(RstStatus.CANCEL);
      return;
    }
    // Old clients send no requestid: then the data stream follows its error stream, two ids later.
    const requestId = headerValue(stream.headers, 'requestid') ?? String(type === 'error' ? stream.id : stream.id - 2);
    let pair = this.pairs.get(requestId);
    if (pair?.[type]) {
      stream.reset(RstStatus.PROTOCOL_ERROR);
      return;
    }
    stream.on('error', (err: Error) => this.logger.debug({ requestId, err: err.message }, 'port-forward stream error'));
    stream.reply();
    if (!pair) {
      const created: StreamPair = {
        port,
        timer: setTimeout(() => this.timeOut(requestId, created), this.ctx.streamCreationTimeoutMs),
      };
      pair = created;
      this.pairs.set(requestId, pair);
    }
    pair[type] = stream;
    if (pair.error && pair.data) {
      clearTimeout(pair.timer);
      this.pairs.delete(requestId);
      void this.forward(requestId, pair.port, pair.error, pair.data);
    }
  }

  private timeOut(requestId: string, pair: StreamPair): void {
    this.pairs.delete(requestId);
    this.logger.warn({ requestId, port: pair.port }, 'port-forward stream pair incomplete');
    if (pair.error) pair.error.end('timed out waiting for streams');
    pair.data?.reset(RstStatus.CANCEL);
  }

  private async forward(requestId: string, port: number, error: SpdyStream, data: SpdyStream): Promise<void> {
    const { podSandboxId } = this.req;
    this.logger.debug({ requestId, port }, 'forwarding port');
    try {
      await this.ctx.backend.portForward(podSandboxId, port, data, this.abort.signal);
      if (!data.destroyed && !data.writableEnded) data.end();
      if (!error.destroyed && !error.writableEnded) error.end();
    } catch (err) {
      const message = `error forwarding port ${port} to pod sandbox ${podSandboxId}: ${errorMessage(err)}`;
      this.logger.info({ requestId, port, err: errorMessage(err) }, 'port-forward failed');
      // FIN (not RST) the error stream so the text is surely read; the data stream is abandoned.
      if (!error.destroyed && !error.writableEnded) error.end(message);
      data.reset(RstStatus.CANCEL);
    }
  }
}
