/**
 * The client side of an interactive exec: the URL from the Exec RPC, upgraded
 * to SPDY/3.1 with our own framing (stream/spdy), streams opened one by one as
 * client-go does, the v4 status read back as the exit code.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { silentLogger } from '../cri-api/logger.js';
import { SpdyConnection, type SpdyStream } from '../stream/index.js';
import { CtlError } from './client.js';

const PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];

export interface TerminalSize {
  width: number;
  height: number;
}

export interface StreamExecOptions {
  /** Sent to the process; ended when it ends. Omitted: the process gets no stdin. */
  stdin?: Readable;
  stdout: Writable;
  /** Omitted with tty (the terminal merges the two). */
  stderr?: Writable;
  tty: boolean;
  /** The terminal's size now, and a way to hear about changes (returns an unsubscribe). */
  size?: () => TerminalSize;
  onResize?: (listener: () => void) => () => void;
}

function upgrade(url: string): Promise<{ conn: SpdyConnection; protocol: string }> {
  const lib = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, {
      method: 'POST',
      headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': PROTOCOLS },
    });
    req.on('upgrade', (res: http.IncomingMessage, socket: Socket, head: Buffer) => {
      socket.setNoDelay(true);
      resolve({ conn: new SpdyConnection(socket, { role: 'client', head, logger: silentLogger }), protocol: String(res.headers['x-stream-protocol-version'] ?? '') });
    });
    req.on('response', (res: http.IncomingMessage) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => reject(new CtlError(`streaming server refused the exec session: HTTP ${res.statusCode}: ${body.trim()}`)));
    });
    req.on('error', (err) => reject(new CtlError(`connect to the streaming server ${new URL(url).host}: ${err.message}`)));
    req.end();
  });
}

function collect(stream: Readable): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    stream.on('data', (c: Buffer) => (text += c.toString()));
    stream.once('end', () => resolve(text));
    stream.once('close', () => resolve(text));
  });
}

function ended(stream: Readable): Promise<void> {
  return new Promise((resolve) => {
    stream.once('end', resolve);
    stream.once('close', resolve);
  });
}

/** The exit code the server reported: v4 writes a JSON status, older versions text only on failure. */
export function exitCodeFromStatus(protocol: string, status: string): number {
  if (protocol !== 'v4.channel.k8s.io') {
    if (status.trim() === '') return 0;
    throw new CtlError(`exec: ${status.trim()}`);
  }
  if (status.trim() === '') return 0;
  const s = JSON.parse(status) as { status?: string; message?: string; reason?: string; details?: { causes?: Array<{ reason?: string; message?: string }> } };
  if (s.status === 'Success') return 0;
  const code = s.details?.causes?.find((c) => c.reason === 'ExitCode')?.message;
  if (s.reason === 'NonZeroExitCode' && code !== undefined) return Number(code);
  throw new CtlError(`exec: ${s.message ?? status}`);
}

/** Runs the exec session behind `url` to its end; resolves with the process's exit code. */
export async function streamExec(url: string, opts: StreamExecOptions): Promise<number> {
  const { conn, protocol } = await upgrade(url);
  const open = (type: string): Promise<SpdyStream> => conn.createStream({ streamtype: [type] });
  let unsubscribe = (): void => undefined;
  try {
    const error = await open('error');
    const status = collect(error);
    const stdin = opts.stdin ? await open('stdin') : undefined;
    const stdout = await open('stdout');
    const stderr = opts.stderr && !opts.tty ? await open('stderr') : undefined;
    const resize = opts.tty && opts.size && (protocol === 'v3.channel.k8s.io' || protocol === 'v4.channel.k8s.io') ? await open('resize') : undefined;
    stdout.pipe(opts.stdout, { end: false });
    if (stderr) stderr.pipe(opts.stderr!, { end: false });
    if (resize && opts.size) {
      const send = (): void => {
        const s = opts.size!();
        resize.write(JSON.stringify({ Width: s.width, Height: s.height }));
      };
      send();
      if (opts.onResize) unsubscribe = opts.onResize(send);
    }
    if (stdin && opts.stdin) opts.stdin.pipe(stdin);
    const [text] = await Promise.all([status, ended(stdout), stderr ? ended(stderr) : undefined]);
    return exitCodeFromStatus(protocol, text);
  } finally {
    unsubscribe();
    if (opts.stdin) {
      opts.stdin.unpipe();
      opts.stdin.pause();
    }
    await conn.shutdown(2000);
  }
}
