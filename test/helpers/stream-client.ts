// A test client for the streaming server, built on the module's own SPDY
// framing: what kubectl/crictl do, reduced to what tests need. Reusable by
// the runtime's real-pod tests: give it the URL an Exec/Attach/PortForward RPC returned.

import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { WebSocket } from 'ws';
import { silentLogger } from '../../cri-api/logger.js';
import { SpdyConnection, type SpdyStream } from '../../stream/spdy/connection.js';
import { channelFraming, decodeChannelMessage, encodeChannelMessage, CLOSE_CHANNEL } from '../../stream/websocket.js';
import type { TerminalSize } from '../../stream/index.js';

/** What kubectl offers for exec/attach (newest first), as separate header lines like Go sends them. */
export const KUBECTL_EXEC_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];

export interface HttpReply {
  statusCode: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export interface SpdyUpgrade {
  protocol: string;
  conn: SpdyConnection;
  socket: Socket;
}

export interface UpgradeOptions {
  /** X-Stream-Protocol-Version values; omitted header when empty. */
  protocols: string[];
  method?: 'GET' | 'POST';
  /** Extra or replacing headers (e.g. a wrong Upgrade). */
  headers?: Record<string, string | string[]>;
  /** Accept self-signed certificates of a test server. */
  insecure?: boolean;
}

/** Sends the SPDY upgrade request: resolves with the connection on 101, else with the HTTP reply. */
export function spdyUpgrade(url: string, opts: UpgradeOptions): Promise<SpdyUpgrade | HttpReply> {
  const headers: Record<string, string | string[]> = { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', ...opts.headers };
  if (opts.protocols.length > 0) headers['X-Stream-Protocol-Version'] = opts.protocols;
  const lib = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method: opts.method ?? 'POST', headers, rejectUnauthorized: !opts.insecure });
    req.on('upgrade', (res: http.IncomingMessage, socket: Socket, head: Buffer) => {
      socket.setNoDelay(true);
      const conn = new SpdyConnection(socket, { role: 'client', head, logger: silentLogger });
      resolve({ protocol: String(res.headers['x-stream-protocol-version'] ?? ''), conn, socket });
    });
    req.on('response', (res: http.IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

export function isUpgrade(r: SpdyUpgrade | HttpReply): r is SpdyUpgrade {
  return 'conn' in r;
}

/** Reads a stream to its end (or its destruction). */
export function collect(stream: Readable): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    const done = (): void => resolve(Buffer.concat(chunks));
    stream.once('end', done);
    stream.once('close', done);
  });
}

export interface ExecClientOptions {
  stdin?: Buffer | Readable;
  stdout?: boolean;
  stderr?: boolean;
  tty?: boolean;
  /** Sizes sent on the resize channel, the first right after the streams are up. */
  resize?: TerminalSize[];
  /** Called with each stdout chunk as it arrives (e.g. to react to a prompt). */
  onStdout?: (chunk: Buffer) => void;
  /** Keep stdin open until this settles (default: end it once written). */
  holdStdin?: Promise<unknown>;
}

export interface ExecClientResult {
  protocol: string;
  stdout: Buffer;
  stderr: Buffer;
  /** Raw bytes of the error channel: JSON status for v4+, text before. */
  status: string;
  /** The WebSocket close code (1000 for a clean close; 1006 when the server dropped the connection instead). */
  closeCode?: number;
}

/** The metav1.Status a v4+ server writes. */
export interface K8sStatus {
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: Array<{ reason?: string; message?: string }> };
}

export function parseStatus(r: ExecClientResult): K8sStatus {
  return JSON.parse(r.status) as K8sStatus;
}

/** Exit code from a v4 status: 0 on Success. */
export function exitCodeOf(status: K8sStatus): number | undefined {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  return cause?.message === undefined ? undefined : Number(cause.message);
}

function feedStdin(stream: NodeJS.WritableStream & { end(): void }, input: Buffer | Readable, hold?: Promise<unknown>): void {
  if (Buffer.isBuffer(input)) {
    stream.write(input);
    if (hold) void hold.then(() => stream.end());
    else stream.end();
  } else {
    input.pipe(stream, { end: !hold });
    if (hold) void hold.then(() => stream.end());
  }
}

/** Runs an exec/attach URL the way client-go does over SPDY (streams opened one by one). */
export async function spdyExec(url: string, opts: ExecClientOptions, protocols: string[] = KUBECTL_EXEC_PROTOCOLS): Promise<ExecClientResult> {
  const up = await spdyUpgrade(url, { protocols });
  if (!isUpgrade(up)) throw new Error(`exec upgrade failed: HTTP ${up.statusCode}: ${up.body}`);
  const { conn, protocol } = up;
  const open = (type: string): Promise<SpdyStream> => conn.createStream({ streamtype: [type] });
  const error = await open('error');
  const statusP = collect(error);
  const stdin = opts.stdin ? await open('stdin') : undefined;
  const stdout = opts.stdout !== false ? await open('stdout') : undefined;
  const stdoutP = stdout ? collect(stdout) : Promise.resolve(Buffer.alloc(0));
  if (stdout && opts.onStdout) stdout.on('data', opts.onStdout);
  const stderr = opts.stderr && !opts.tty ? await open('stderr') : undefined;
  const stderrP = stderr ? collect(stderr) : Promise.resolve(Buffer.alloc(0));
  const resize = opts.tty && protocol !== 'v2.channel.k8s.io' && protocol !== 'channel.k8s.io' ? await open('resize') : undefined;
  for (const s of opts.resize ?? []) resize?.write(JSON.stringify({ Width: s.width, Height: s.height }));
  if (stdin && opts.stdin) feedStdin(stdin, opts.stdin, opts.holdStdin);
  const [out, err, status] = await Promise.all([stdoutP, stderrP, statusP]);
  await conn.shutdown(2000);
  return { protocol, stdout: out, stderr: err, status: status.toString('utf8') };
}

/** The ws:// form of an http(s):// URL. */
export function wsUrl(url: string): string {
  return url.replace(/^http/, 'ws');
}

/** Runs an exec/attach URL over WebSocket with the given subprotocol ('' offers none). */
export function wsExec(url: string, opts: ExecClientOptions, protocol: string): Promise<ExecClientResult> {
  const framing = channelFraming(protocol);
  const ws = new WebSocket(wsUrl(url), protocol ? [protocol] : []);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const status: Buffer[] = [];
  const send = (ch: number, data: Buffer): void => { ws.send(encodeChannelMessage(framing, ch, data)); };
  return new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('unexpected-response', (_req, res) => reject(new Error(`websocket upgrade failed: HTTP ${res.statusCode}`)));
    ws.on('open', () => {
      for (const s of opts.resize ?? []) send(4, Buffer.from(JSON.stringify({ Width: s.width, Height: s.height })));
      const endStdin = (): void => { if (framing.v5) ws.send(Buffer.from([CLOSE_CHANNEL, 0])); };
      if (Buffer.isBuffer(opts.stdin)) {
        for (let off = 0; off < opts.stdin.length; off += 64 * 1024) send(0, opts.stdin.subarray(off, off + 64 * 1024));
        if (opts.holdStdin) void opts.holdStdin.then(endStdin);
        else endStdin();
      } else if (opts.stdin) {
        opts.stdin.on('data', (c: Buffer) => send(0, c));
        opts.stdin.on('end', endStdin);
      }
    });
    ws.on('message', (raw: Buffer, isBinary: boolean) => {
      const msg = decodeChannelMessage(framing, raw, isBinary);
      if (!msg || 'closeChannel' in msg) return;
      if (msg.channel === 1) { out.push(msg.data); opts.onStdout?.(msg.data); }
      else if (msg.channel === 2) err.push(msg.data);
      else if (msg.channel === 3) status.push(msg.data);
    });
    ws.on('close', (code) => resolve({ protocol: ws.protocol, stdout: Buffer.concat(out), stderr: Buffer.concat(err), status: Buffer.concat(status).toString('utf8'), closeCode: code }));
  });
}

export interface ForwardedConnection {
  data: SpdyStream;
  error: SpdyStream;
  /** Everything the server wrote on the error stream, once it ends. */
  errorText: Promise<string>;
}

/** Opens one forwarded connection on a port-forward SPDY connection, as kubectl does. */
export async function spdyForward(conn: SpdyConnection, port: number, requestId: number): Promise<ForwardedConnection> {
  const headers = (type: string): Record<string, string[]> => ({ streamtype: [type], port: [String(port)], requestid: [String(requestId)] });
  const error = await conn.createStream(headers('error'));
  error.end();
  const errorText = collect(error).then((b) => b.toString('utf8'));
  const data = await conn.createStream(headers('data'));
  return { data, error, errorText };
}
