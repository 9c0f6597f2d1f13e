// The HTTP(S) server behind the URLs that Exec, Attach and PortForward return:
// token lookup, protocol negotiation, and hand-off of the upgraded connection
// to a SPDY or WebSocket session.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { invalidArgument } from '../cri-api/errors.js';
import { SpdyExecSession, type ExecOrAttach } from './session-exec.js';
import { SpdyPortForwardSession, parsePort } from './session-portforward.js';
import type { Session, SessionContext } from './session.js';
import { TokenCache, type CachedRequest } from './tokens.js';
import type { AttachRequest, ExecRequest, PortForwardRequest, StreamServerOptions } from './types.js';
import { WS_EXEC_PROTOCOLS, WS_PORTFORWARD_PROTOCOLS, WS_PORTFORWARD_TUNNEL, WebSocketExecSession, WebSocketPortForwardSession, tunnelSpdyPortForward } from './websocket.js';

/** SPDY subprotocols, newest first; the client's order decides. */
export const SPDY_EXEC_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'] as const;
export const SPDY_PORTFORWARD_PROTOCOLS = ['portforward.k8s.io'] as const;

const DEFAULT_TOKEN_TTL_MS = 60_000;
const DEFAULT_MAX_PENDING = 1000;
const DEFAULT_STREAM_CREATION_TIMEOUT_MS = 30_000;
const DEFAULT_IDLE_TIMEOUT_MS = 4 * 60 * 60 * 1000;
const DEFAULT_MAX_SESSIONS = 128;
const SHUTDOWN_TIMEOUT_MS = 5_000;

type Kind = CachedRequest['kind'];

interface HttpError { status: number; message: string; headers?: Record<string, string | string[]> }

/** Splits header lines that may each hold a comma-joined list. */
function headerList(req: http.IncomingMessage, name: string): string[] {
  const lines = req.headersDistinct[name] ?? [];
  return lines.flatMap((l) => l.split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
}

function headerHas(req: http.IncomingMessage, name: string, token: string): boolean {
  return headerList(req, name).some((v) => v.toLowerCase() === token);
}

/** First protocol in the client's order that we speak. */
function negotiate(offered: string[], supported: readonly string[]): string | undefined {
  return offered.find((p) => supported.includes(p));
}

function isWebSocketUpgrade(req: http.IncomingMessage): boolean {
  return headerHas(req, 'upgrade', 'websocket') && headerHas(req, 'connection', 'upgrade');
}

function pem(value: string, what: string): string {
  if (value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch (err) {
    throw invalidArgument(`streaming server: reading ${what} ${value}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function validateStreams(what: string, req: { containerId: string; tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }): void {
  if (!req.containerId) throw invalidArgument(`${what}: container id is required`);
  if (!req.stdin && !req.stdout && !req.stderr) throw invalidArgument(`${what} in container ${req.containerId}: one of stdin, stdout or stderr must be requested`);
  if (req.tty && req.stderr) throw invalidArgument(`${what} in container ${req.containerId}: tty and stderr cannot both be requested (a terminal has one output)`);
}

/** Writes a plain HTTP response on a socket that Node handed us for an upgrade. */
function rejectSocket(socket: Duplex, err: HttpError): void {
  const body = `${err.message}\n`;
  const lines = [`HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? ''}`, 'Content-Type: text/plain; charset=utf-8', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close'];
  for (const [name, value] of Object.entries(err.headers ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
  }
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

export class StreamServer {
  readonly url: string;
  private readonly tokens: TokenCache;
  private readonly ctx: SessionContext;
  private readonly logger: Logger;
  private readonly sessions = new Set<Session>();
  private readonly sockets = new Set<Socket>();
  private readonly wss: WebSocketServer;
  private readonly wsProtocol = new WeakMap<http.IncomingMessage, string>();
  private readonly maxSessions: number;
  private closing: Promise<void> | undefined;

  private constructor(private readonly server: http.Server, url: string, opts: StreamServerOptions) {
    this.url = url;
    this.logger = opts.logger.child({ component: 'stream-server' });
    this.maxSessions = opts.maxSessions ?? DEFAULT_MAX_SESSIONS;
    this.tokens = new TokenCache(opts.tokenTtlMs ?? DEFAULT_TOKEN_TTL_MS, opts.maxPendingRequests ?? DEFAULT_MAX_PENDING);
    this.ctx = {
      backend: opts.backend,
      logger: this.logger,
      streamCreationTimeoutMs: opts.streamCreationTimeoutMs ?? DEFAULT_STREAM_CREATION_TIMEOUT_MS,
      idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    };
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: 16 * 1024 * 1024,
      handleProtocols: (_offered, req) => this.wsProtocol.get(req) || false,
    });
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res));
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
  }

  /** Listens on opts.address:opts.port (0: a free port) and resolves once bound. */
  static async start(opts: StreamServerOptions): Promise<StreamServer> {
    if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw invalidArgument('streaming server: TLS needs both a certificate and a key');
    const tls = Boolean(opts.tlsCert && opts.tlsKey);
    const server = tls
      ? https.createServer({ cert: pem(opts.tlsCert!, 'TLS certificate'), key: pem(opts.tlsKey!, 'TLS key') })
      : http.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`streaming server: listening on ${opts.address}:${opts.port}: ${err.message}`, { cause: err })));
      server.listen(opts.port, opts.address, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const host = opts.address.includes(':') ? `[${opts.address}]` : opts.address;
    const url = `${tls ? 'https' : 'http'}://${host}:${port}`;
    opts.logger.info({ url }, 'streaming server listening');
    return new StreamServer(server, url, opts);
  }

  /** Caches an exec request under a fresh single-use token; returns its absolute URL. */
  getExecUrl(req: ExecRequest): string {
    validateStreams('exec', req);
    if (req.cmd.length === 0) throw invalidArgument(`exec in container ${req.containerId}: cmd is required`);
    return this.issue({ kind: 'exec', req: { ...req, cmd: [...req.cmd] } });
  }

  getAttachUrl(req: AttachRequest): string {
    validateStreams('attach', req);
    return this.issue({ kind: 'attach', req: { ...req } });
  }

  getPortForwardUrl(req: PortForwardRequest): string {
    if (!req.podSandboxId) throw invalidArgument('port forward: pod sandbox id is required');
    const bad = req.ports.find((p) => !Number.isInteger(p) || p < 1 || p > 65535);
    if (bad !== undefined) throw invalidArgument(`port forward to pod sandbox ${req.podSandboxId}: port ${bad} is not in 1-65535`);
    return this.issue({ kind: 'portforward', req: { podSandboxId: req.podSandboxId, ports: [...req.ports] } });
  }

  /** Stops accepting, ends every session cleanly (GOAWAY / close 1000), and drops stragglers after a bound. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const sessionsClosed = Promise.allSettled([...this.sessions].map((s) => s.close()));
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => { timer = setTimeout(resolve, SHUTDOWN_TIMEOUT_MS); });
    await Promise.race([Promise.all([sessionsClosed, serverClosed]), bound]);
    clearTimeout(timer);
    for (const s of this.sockets) s.destroy();
    this.wss.close();
    await serverClosed;
    this.logger.info({ url: this.url }, 'streaming server closed');
  }

  private issue(request: CachedRequest): string {
    const token = this.tokens.insert(request);
    return `${this.url}/${request.kind}/${token}`;
  }

  /** Route and token: the token is consumed here whatever happens next. */
  private lookup(req: http.IncomingMessage): CachedRequest | HttpError {
    if (req.method !== 'GET' && req.method !== 'POST') return { status: 405, message: `method ${req.method} not allowed`, headers: { Allow: 'GET, POST' } };
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)$/.exec(path);
    if (!m) return { status: 404, message: 'not found' };
    const cached = this.tokens.consume(m[2]!, m[1] as Kind);
    if (!cached) return { status: 404, message: `unknown, expired or already used ${m[1]} token` };
    return cached;
  }

  /** Validates the SPDY handshake headers and picks the subprotocol. */
  private spdyHandshake(req: http.IncomingMessage, kind: Kind): string | HttpError {
    const offered = headerList(req, 'x-stream-protocol-version');
    if (offered.length === 0) return { status: 400, message: 'missing X-Stream-Protocol-Version header' };
    const supported = kind === 'portforward' ? SPDY_PORTFORWARD_PROTOCOLS : SPDY_EXEC_PROTOCOLS;
    const chosen = negotiate(offered, supported);
    if (!chosen) {
      return {
        status: 403,
        message: `none of the offered stream protocols [${offered.join(', ')}] is supported; supported: [${supported.join(', ')}]`,
        headers: { 'X-Accepted-Stream-Protocol-Versions': [...supported] },
      };
    }
    if (!headerHas(req, 'connection', 'upgrade') || !headerList(req, 'upgrade').some((v) => v.toLowerCase().includes('spdy/3.1'))) {
      return { status: 400, message: 'expected Connection: Upgrade and Upgrade: SPDY/3.1' };
    }
    return chosen;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const cached = this.lookup(req);
    const result = 'status' in cached ? cached : this.spdyHandshake(req, cached.kind);
    // A plain request can never become a session: the best outcome is a precise error.
    const err: HttpError = typeof result === 'string' ? { status: 400, message: 'expected Connection: Upgrade and Upgrade: SPDY/3.1' } : result;
    res.writeHead(err.status, { 'Content-Type': 'text/plain; charset=utf-8', ...err.headers });
    res.end(`${err.message}\n`);
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'streaming socket error'));
    if (this.closing) {
      rejectSocket(socket, { status: 503, message: 'streaming server shutting down' });
      return;
    }
    // Each session holds a process in the sandbox, pipes and buffers: bounded,
    // and refused before the token is consumed so the client may retry with it.
    if (this.sessions.size >= this.maxSessions) {
      this.logger.warn({ sessions: this.sessions.size, limit: this.maxSessions }, 'streaming session refused: limit reached');
      rejectSocket(socket, { status: 429, message: `too many streaming sessions: ${this.sessions.size} open, the limit is ${this.maxSessions} (max-stream-sessions); retry when one has ended`, headers: { 'Retry-After': '1' } });
      return;
    }
    const cached = this.lookup(req);
    if ('status' in cached) {
      rejectSocket(socket, cached);
      return;
    }
    if (isWebSocketUpgrade(req)) this.upgradeWebSocket(req, socket, head, cached);
    else this.upgradeSpdy(req, socket, head, cached);
  }

  private upgradeSpdy(req: http.IncomingMessage, socket: Duplex, head: Buffer, cached: CachedRequest): void {
    const chosen = this.spdyHandshake(req, cached.kind);
    if (typeof chosen !== 'string') {
      rejectSocket(socket, chosen);
      return;
    }
    // Nothing but the 101 until the client's first frame: client-go loses bytes that ride along with it.
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${chosen}\r\n\r\n`);
    if ('setNoDelay' in socket && typeof socket.setNoDelay === 'function') (socket as Socket).setNoDelay(true);
    const session = cached.kind === 'portforward'
      ? new SpdyPortForwardSession(socket, head, cached.req, this.ctx)
      : new SpdyExecSession(socket, head, spdyVersion(chosen), cached as ExecOrAttach, this.ctx);
    this.track(session);
  }

  private upgradeWebSocket(req: http.IncomingMessage, socket: Duplex, head: Buffer, cached: CachedRequest): void {
    const offered = headerList(req, 'sec-websocket-protocol');
    const supported: readonly string[] = cached.kind === 'portforward' ? WS_PORTFORWARD_PROTOCOLS : WS_EXEC_PROTOCOLS;
    const chosen = offered.length === 0 ? '' : negotiate(offered, supported);
    if (chosen === undefined) {
      rejectSocket(socket, { status: 403, message: `none of the offered WebSocket protocols [${offered.join(', ')}] is supported; supported: [${supported.join(', ')}]` });
      return;
    }
    let ports: number[] = [];
    if (cached.kind === 'portforward' && chosen !== WS_PORTFORWARD_TUNNEL) {
      const result = wsPorts(req, cached.req);
      if (!Array.isArray(result)) {
        rejectSocket(socket, result);
        return;
      }
      ports = result;
    }
    this.wsProtocol.set(req, chosen);
    // ws rejects subprotocols that are not RFC 7230 tokens, yet crictl offers "SPDY/3.1+portforward.k8s.io":
    // negotiation is done above, so hand ws a valid stand-in; handleProtocols answers with the real name.
    if (chosen) req.headers['sec-websocket-protocol'] = 'negotiated';
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      let session: Session;
      if (cached.kind === 'portforward') {
        session = chosen === WS_PORTFORWARD_TUNNEL
          ? tunnelSpdyPortForward(ws, cached.req, this.ctx)
          : new WebSocketPortForwardSession(ws, chosen, cached.req, ports, this.ctx);
      } else {
        session = new WebSocketExecSession(ws, chosen, cached, this.ctx);
      }
      this.track(session);
    });
  }

  private track(session: Session): void {
    this.sessions.add(session);
    void session.done.then(() => this.sessions.delete(session));
  }
}

function spdyVersion(protocol: string): number {
  const m = /^v(\d+)\./.exec(protocol);
  return m ? Number(m[1]) : 1;
}

/** WebSocket port-forward names its ports in ?port= (as kubectl does), else the CRI request's. */
function wsPorts(req: http.IncomingMessage, pf: PortForwardRequest): number[] | HttpError {
  const query = new URL(req.url ?? '/', 'http://x').searchParams.getAll('port');
  if (query.length === 0) {
    if (pf.ports.length === 0) return { status: 400, message: 'no port to forward: give ?port= or ports in the PortForward request' };
    return pf.ports;
  }
  const ports: number[] = [];
  for (const q of query) {
    const port = parsePort(q);
    if (port === undefined) return { status: 400, message: `port ${JSON.stringify(q)} is not in 1-65535` };
    if (pf.ports.length > 0 && !pf.ports.includes(port)) return { status: 403, message: `port ${port} was not in the PortForward request` };
    ports.push(port);
  }
  return ports;
}
