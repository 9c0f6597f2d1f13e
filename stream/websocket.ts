// The WebSocket variants of exec/attach and port-forward: Kubernetes' channel
// protocol (one channel byte, then payload; or '0'+channel and base64 text),
// v5's half-close message, and the SPDY-in-WebSocket port-forward tunnel.

import { Duplex, Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { createWebSocketStream, type WebSocket } from 'ws';
import { CLOSE_GRACE_MS, boundedWait, runExecOrAttach, settleWritable, type ExecChannels, type ExecOrAttach } from './session-exec.js';
import { SpdyPortForwardSession } from './session-portforward.js';
import { ResizeQueue, parseTerminalSize } from './resize.js';
import { errorMessage, type Session, type SessionContext } from './session.js';
import { legacyStatus, v4Status, type SessionOutcome } from './status.js';
import type { PortForwardRequest } from './types.js';

/** In preference order when a client offers several (we take the client's order anyway). */
export const WS_EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v4.base64.channel.k8s.io', 'channel.k8s.io', 'base64.channel.k8s.io'] as const;
export const WS_PORTFORWARD_TUNNEL = 'SPDY/3.1+portforward.k8s.io';
export const WS_PORTFORWARD_PROTOCOLS = [WS_PORTFORWARD_TUNNEL, 'v4.channel.k8s.io', 'v4.base64.channel.k8s.io', 'channel.k8s.io', 'base64.channel.k8s.io'] as const;

export const Channel = { STDIN: 0, STDOUT: 1, STDERR: 2, ERROR: 3, RESIZE: 4 } as const;
/** v5: a binary message [CLOSE_CHANNEL, ch] half-closes channel ch. */
export const CLOSE_CHANNEL = 0xff;

const CLOSE_TIMEOUT_MS = 10_000;

export interface ChannelFraming {
  base64: boolean;
  v5: boolean;
  /** JSON metav1.Status on the error channel (v4+) rather than plain text. */
  jsonStatus: boolean;
}

/** How a negotiated subprotocol ("" when none was offered) frames channels. */
export function channelFraming(protocol: string): ChannelFraming {
  return {
    base64: protocol.includes('base64'),
    v5: protocol.startsWith('v5.'),
    jsonStatus: protocol.startsWith('v4.') || protocol.startsWith('v5.'),
  };
}

/** Encodes one channel message. */
export function encodeChannelMessage(framing: ChannelFraming, channel: number, data: Buffer): Buffer | string {
  if (framing.base64) return String.fromCharCode(48 + channel) + data.toString('base64');
  const msg = Buffer.allocUnsafe(1 + data.length);
  msg[0] = channel;
  data.copy(msg, 1);
  return msg;
}

export type ChannelMessage = { channel: number; data: Buffer } | { closeChannel: number };

/** Decodes one channel message; undefined for an empty or malformed one. */
export function decodeChannelMessage(framing: ChannelFraming, raw: Buffer, isBinary: boolean): ChannelMessage | undefined {
  if (raw.length === 0) return undefined;
  if (framing.base64 && !isBinary) {
    const channel = raw[0]! - 48;
    if (channel < 0 || channel > 9) return undefined;
    return { channel, data: Buffer.from(raw.subarray(1).toString('latin1'), 'base64') };
  }
  if (framing.v5 && raw[0] === CLOSE_CHANNEL) return raw.length >= 2 ? { closeChannel: raw[1]! } : undefined;
  return { channel: raw[0]!, data: raw.subarray(1) };
}

/** A WebSocket carrying numbered channels; incoming data is routed by channel. */
class ChannelSocket {
  private readonly inputs = new Map<number, Readable>();
  /** Channels whose input ended: what still comes on them is dropped (a push after the end is an error). */
  private readonly ended = new Set<number>();

  constructor(readonly ws: WebSocket, readonly framing: ChannelFraming, private readonly logger: Logger) {
    ws.on('message', (raw: Buffer, isBinary: boolean) => this.onMessage(raw, isBinary));
    ws.on('close', () => this.closeInputs());
    ws.on('error', (err: Error) => logger.debug({ err: err.message }, 'websocket error'));
  }

  send(channel: number, data: Buffer, cb?: (err?: Error) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) { cb?.(); return; }
    this.ws.send(encodeChannelMessage(this.framing, channel, data), (err) => cb?.(err ?? undefined));
  }

  /** A Readable of everything the client sends on channel. */
  input(channel: number): Readable {
    const input = new Readable({ read: () => { if (this.ws.isPaused) this.ws.resume(); } });
    this.inputs.set(channel, input);
    return input;
  }

  /** A Writable whose writes go out on channel, one message per write, paced by the socket. */
  output(channel: number): Writable {
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => this.send(channel, chunk, () => cb()),
    });
  }

  /** Handles a channel input that arrives as whole messages (resize). */
  onChannel(channel: number, handler: (data: Buffer) => void): void {
    const input = new Readable({ read: () => undefined });
    input.on('data', handler);
    this.inputs.set(channel, input);
  }

  private closeInputs(): void {
    for (const channel of this.inputs.keys()) this.endInput(channel);
  }

  /**
   * Ends a channel's input. The socket may be paused for it (its last data
   * filled its buffer): an ended input is never read again, so it would stay
   * paused, and the client's close frame would never be read.
   */
  private endInput(channel: number): void {
    if (!this.ended.has(channel)) this.inputs.get(channel)?.push(null);
    this.ended.add(channel);
    if (this.ws.isPaused) this.ws.resume();
  }

  /**
   * Ends every input (which resumes a socket paused for one of them, so the
   * client's close frame is read), closes with 1000 once everything queued
   * is sent, and waits (bounded) for the close to complete.
   */
  async closeNormally(): Promise<void> {
    this.closeInputs();
    if (this.ws.readyState === this.ws.CLOSED) return;
    const closed = new Promise<void>((resolve) => this.ws.once('close', () => resolve()));
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(1000);
    const timer = setTimeout(() => this.ws.terminate(), CLOSE_TIMEOUT_MS);
    await closed;
    clearTimeout(timer);
  }

  private onMessage(raw: Buffer, isBinary: boolean): void {
    const msg = decodeChannelMessage(this.framing, raw, isBinary);
    if (!msg) return;
    if ('closeChannel' in msg) {
      this.endInput(msg.closeChannel);
      return;
    }
    const input = this.inputs.get(msg.channel);
    if (!input || this.ended.has(msg.channel)) {
      this.logger.debug({ channel: msg.channel }, 'dropping data on a channel nobody reads');
      return;
    }
    if (!input.push(msg.data)) this.ws.pause();
  }
}

/** Exec/attach over a WebSocket channel protocol. */
export class WebSocketExecSession implements Session {
  readonly done: Promise<void>;
  private readonly abort = new AbortController();
  private readonly channels: ChannelSocket;
  private readonly logger: Logger;
  private running: Promise<void> | undefined;

  constructor(ws: WebSocket, protocol: string, private readonly cached: ExecOrAttach, private readonly ctx: SessionContext) {
    this.logger = ctx.logger.child({ session: cached.kind, containerId: cached.req.containerId, protocol: protocol || 'binary' });
    this.channels = new ChannelSocket(ws, channelFraming(protocol), this.logger);
    this.done = new Promise((resolve) => ws.once('close', () => {
      this.abort.abort(new Error('client connection closed'));
      resolve();
    }));
    this.run();
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('streaming server shutting down'));
    // Let the aborted backend return so the client still gets a status.
    if (this.running) await boundedWait(this.running, CLOSE_GRACE_MS);
    await this.channels.closeNormally();
  }

  private run(): void {
    const { req } = this.cached;
    const ch = this.channels;
    const io: ExecChannels = { signal: this.abort.signal, finish: (o) => this.finish(io, o) };
    if (req.stdin) io.stdin = ch.input(Channel.STDIN);
    if (req.stdout) io.stdout = ch.output(Channel.STDOUT);
    if (req.stderr && !req.tty) io.stderr = ch.output(Channel.STDERR);
    if (req.tty) {
      const queue = new ResizeQueue();
      ch.onChannel(Channel.RESIZE, (data) => {
        const size = parseTerminalSize(data.toString('utf8'));
        if (size) queue.push(size);
        else this.logger.debug('dropping malformed resize message');
      });
      io.resize = queue;
    }
    // An empty message on the lowest channel we write tells the client the session is up.
    ch.send(io.stdout ? Channel.STDOUT : io.stderr ? Channel.STDERR : Channel.ERROR, Buffer.alloc(0));
    this.running = runExecOrAttach(this.cached, this.ctx.backend, io, this.logger);
  }

  private async finish(io: ExecChannels, outcome: SessionOutcome): Promise<void> {
    io.stdout?.end();
    io.stderr?.end();
    await Promise.all([settleWritable(io.stdout), settleWritable(io.stderr)]);
    const status = this.channels.framing.jsonStatus ? v4Status(outcome) : legacyStatus(outcome);
    if (status) await new Promise<void>((resolve) => this.channels.send(Channel.ERROR, status, () => resolve()));
    await this.channels.closeNormally();
  }
}

/** One forwarded port's data channel as the Duplex the backend copies. */
class ChannelDuplex extends Duplex {
  constructor(private readonly channels: ChannelSocket, private readonly channel: number, input: Readable) {
    super({ allowHalfOpen: true });
    input.on('data', (chunk: Buffer) => { if (!this.push(chunk)) input.pause(); });
    input.on('end', () => this.push(null));
    this.resumeInput = () => input.resume();
  }

  private readonly resumeInput: () => void;

  override _read(): void {
    this.resumeInput();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.channels.send(this.channel, chunk, () => cb());
  }
}

/**
 * Port-forward over WebSocket channels: channel 2i carries port i's data,
 * 2i+1 its errors; each starts with the port, 2 bytes little-endian.
 */
export class WebSocketPortForwardSession implements Session {
  readonly done: Promise<void>;
  private readonly abort = new AbortController();
  private readonly channels: ChannelSocket;
  private readonly logger: Logger;

  constructor(ws: WebSocket, protocol: string, private readonly req: PortForwardRequest, ports: number[], private readonly ctx: SessionContext) {
    this.logger = ctx.logger.child({ session: 'portforward', podSandboxId: req.podSandboxId, protocol: protocol || 'binary' });
    this.channels = new ChannelSocket(ws, channelFraming(protocol), this.logger);
    this.done = new Promise((resolve) => ws.once('close', () => {
      this.abort.abort(new Error('client connection closed'));
      resolve();
    }));
    void this.run(ports);
  }

  close(): Promise<void> {
    this.abort.abort(new Error('streaming server shutting down'));
    return this.channels.closeNormally();
  }

  private async run(ports: number[]): Promise<void> {
    const forwards = ports.map((port, i) => {
      const dataChannel = 2 * i;
      const errorChannel = 2 * i + 1;
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16LE(port);
      const conn = new ChannelDuplex(this.channels, dataChannel, this.channels.input(dataChannel));
      this.channels.send(dataChannel, prefix);
      this.channels.send(errorChannel, prefix);
      return this.ctx.backend.portForward(this.req.podSandboxId, port, conn, this.abort.signal).catch((err: unknown) => {
        const message = `error forwarding port ${port} to pod sandbox ${this.req.podSandboxId}: ${errorMessage(err)}`;
        this.logger.info({ port, err: errorMessage(err) }, 'port-forward failed');
        return new Promise<void>((resolve) => this.channels.send(errorChannel, Buffer.from(message), () => resolve()));
      }).finally(() => conn.destroy());
    });
    await Promise.all(forwards);
    await this.channels.closeNormally();
  }
}

/** Port-forward with SPDY frames tunnelled in binary WebSocket messages. */
export function tunnelSpdyPortForward(ws: WebSocket, req: PortForwardRequest, ctx: SessionContext): Session {
  const duplex = createWebSocketStream(ws);
  // ws's stream wrapper never closes if the peer vanishes mid-close; the WebSocket's close is final.
  ws.once('close', () => setImmediate(() => duplex.destroy()));
  return new SpdyPortForwardSession(duplex, Buffer.alloc(0), req, ctx);
}
