import { chmod } from 'node:fs/promises';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/api.js';
import type { RuntimeServiceHandlers } from './generated/runtime/v1/RuntimeService.js';
import type { ImageServiceHandlers } from './generated/runtime/v1/ImageService.js';
import { CriError } from './errors.js';
import { acceptsEncoding, GrpcStatusError, MAX_MESSAGE, messagePrefix, OK_TRAILERS, parseGrpcTimeout, RequestReader, RESPONSE_HEADERS, statusBlock } from './grpc-wire.js';
import type { HeaderField } from './hpack.js';
import { H2Connection, type H2Stream, type StreamHandler } from './http2-connection.js';
import type { Logger } from './logger.js';
import { ResponseMemo } from './response-memo.js';

/** Where our CRI definition lives, found from source (cri-api/) and from the build (dist/cri-api/). */
export const PROTO_PATH = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../cri-api/proto/api.proto' : './proto/api.proto', import.meta.url));

/** Options that keep field names and 64-bit values as the proto spells them; the generated types assume these. */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

export function loadCriProto(): ProtoGrpcType {
  const definition = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  return grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
}

/** What every handler gets besides its request. */
export interface CallContext {
  logger: Logger;
  /** Aborted when the caller cancels or its deadline passes. */
  signal: AbortSignal;
}

/** The generated handler interfaces minus grpc-js's string index signature, which would swallow every name. */
type Named<T> = { [K in keyof T as string extends K ? never : number extends K ? never : K]: T[K] };
type AllHandlers = Named<RuntimeServiceHandlers> & Named<ImageServiceHandlers>;

/** The name of every CRI RPC, RuntimeService and ImageService together. */
export type RpcName = keyof AllHandlers & string;

type Promised<H> =
  H extends grpc.handleUnaryCall<infer Req, infer Res>
    ? (req: Req, ctx: CallContext) => Promise<Res>
    : H extends grpc.handleServerStreamingCall<infer Req, infer Res>
      ? (req: Req, send: (res: Res) => Promise<void>, ctx: CallContext) => Promise<void>
      : never;

/**
 * Handlers as plain async functions: a unary one returns its response, a
 * server-streaming one calls `send` for each message. The ones left out
 * answer UNIMPLEMENTED.
 */
export type CriHandlers = { [K in RpcName]?: Promised<AllHandlers[K]> };

export interface CriServer {
  readonly socketPath: string;
  /** Stops accepting calls and waits (up to `graceMs`) for those in flight. */
  shutdown(graceMs: number): Promise<void>;
}

function toStatus(err: unknown, rpc: string, logger: Logger): GrpcStatusError {
  if (err instanceof CriError) return new GrpcStatusError(err.code, err.message);
  logger.error({ err, rpc }, 'unexpected error in handler');
  const message = err instanceof Error ? err.message : String(err);
  return new GrpcStatusError(grpc.status.INTERNAL, `${rpc}: ${message}`);
}

const DEADLINE_CANCEL_SLACK_MS = 100;
const MAX_TIMER_MS = 2 ** 31 - 1;

type UnaryRun = (req: unknown, ctx: CallContext) => Promise<unknown>;
type StreamRun = (req: unknown, send: (res: unknown) => Promise<void>, ctx: CallContext) => Promise<void>;

/** One RPC as the server dispatches it; made once per method at start. */
interface Route {
  rpc: string;
  deserialize: (bytes: Buffer) => unknown;
  serialize: (value: unknown) => Buffer;
  streaming: boolean;
  run: UnaryRun | StreamRun | undefined;
  logger: Logger;
  /** Unary RPCs kubelet polls: answers equal to the last one for the same request go out as its bytes. */
  memo: ResponseMemo | undefined;
}

/**
 * What kubelet asks again and again (PLEG's relist, container status, image checks).
 * Not PodSandboxStatus: its answer carries the time it was made, so no two are equal.
 */
const POLLED_RPCS: ReadonlySet<string> = new Set(['ListPodSandbox', 'ListContainers', 'ContainerStatus', 'ImageStatus', 'ListImages']);

/** What the server keeps across its connections. */
interface ServerState {
  routes: Map<string, Route>;
  services: Set<string>;
  /** Calls whose handler is running (shutdown waits for them). */
  running: Set<Call>;
  /** Fired when `running` empties. */
  idle: (() => void) | undefined;
}

/** The handler's promise, also when it throws before returning one. */
function settled<T>(run: () => Promise<T>): Promise<T> {
  try {
    return run();
  } catch (err) {
    return Promise.reject(err);
  }
}

/** One gRPC call on one HTTP/2 stream: its request, deadline, signal and answer. */
class Call implements StreamHandler {
  private readonly reader: RequestReader;
  /** The request's bytes, kept for the route's memo. */
  private request: Buffer | undefined;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private deadlineAt = Infinity;
  private headersSent = false;
  /** The answer's end went out, or the stream is gone: nothing more is written. */
  private finished = false;

  constructor(
    private readonly state: ServerState,
    private readonly route: Route,
    private readonly stream: H2Stream,
    encoding: string | undefined,
    timeoutMs: number | undefined,
  ) {
    this.reader = new RequestReader(encoding);
    if (timeoutMs !== undefined) {
      this.deadlineAt = Date.now() + timeoutMs;
      // setTimeout fires at once for a delay past 2^31-1 ms (24.8 days): a deadline that far off needs no timer.
      if (timeoutMs <= MAX_TIMER_MS) this.timer = setTimeout(() => this.onDeadline(), timeoutMs);
    }
    stream.handler = this;
  }

  onData(chunk: Buffer, end: boolean): void {
    if (this.finished) return;
    try {
      this.reader.push(chunk);
      if (end) {
        const message = this.reader.message();
        if (this.route.memo) this.request = message;
        this.start(this.decode(message));
      }
    } catch (err) {
      this.fail(err instanceof GrpcStatusError ? err : toStatus(err, this.route.rpc, this.route.logger));
    }
  }

  onReset(): void {
    if (this.finished) return;
    this.finished = true;
    this.clearTimer();
    // A client cancels the stream at its own deadline, which the server's (counted from the request's arrival) trails by the transit time:
    // a cancel that close to the deadline is the deadline, for the logs and the reason the work stopped.
    this.controller.abort(
      Date.now() >= this.deadlineAt - DEADLINE_CANCEL_SLACK_MS ? new CriError(grpc.status.DEADLINE_EXCEEDED, 'deadline exceeded') : new CriError(grpc.status.CANCELLED, 'call cancelled by the client'),
    );
  }

  /** At shutdown a stream that never ends (GetContainerEvents) must not hold the server open: its handler's end answers the client. */
  abortStream(): void {
    if (this.route.streaming) this.controller.abort(new CriError(grpc.status.UNAVAILABLE, 'server shutting down'));
  }

  private onDeadline(): void {
    this.timer = undefined;
    if (this.finished) return;
    this.controller.abort(new CriError(grpc.status.DEADLINE_EXCEEDED, 'deadline exceeded'));
    this.fail(new GrpcStatusError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
  }

  private start(request: unknown): void {
    const { route, state } = this;
    const ctx: CallContext = { logger: route.logger, signal: this.controller.signal };
    state.running.add(this);
    if (route.streaming) {
      const send = (res: unknown): Promise<void> => this.send(res);
      void settled(() => (route.run as StreamRun)(request, send, ctx)).then(
        () => {
          this.done();
          this.succeed(undefined);
        },
        (err: unknown) => {
          this.done();
          this.fail(toStatus(err, route.rpc, route.logger));
        },
      );
      return;
    }
    const started = route.logger.isLevelEnabled('debug') ? performance.now() : 0;
    void settled(() => (route.run as UnaryRun)(request, ctx)).then(
      (res) => {
        this.done();
        if (started) route.logger.debug({ ms: performance.now() - started }, 'ok');
        this.succeed(res);
      },
      (err: unknown) => {
        this.done();
        const status = toStatus(err, route.rpc, route.logger);
        route.logger.debug({ code: status.code, details: status.message }, 'failed');
        this.fail(status);
      },
    );
  }

  private send(res: unknown): Promise<void> {
    if (this.finished) return Promise.resolve();
    const message = this.encode(res);
    const headers = this.headersSent ? undefined : RESPONSE_HEADERS;
    this.headersSent = true;
    const connection = this.stream.connection;
    return connection.write(this.stream, headers, [messagePrefix(message.length), message], undefined) ? Promise.resolve() : connection.writable(this.stream);
  }

  /** The unary answer (or a stream's end): headers, message and trailers in one write where the windows allow. */
  private succeed(res: unknown): void {
    if (this.finished) return;
    let data: Buffer[] | undefined;
    if (res !== undefined) {
      let message: Buffer;
      try {
        message = this.encode(res, this.request);
      } catch (err) {
        return this.fail(err instanceof GrpcStatusError ? err : toStatus(err, this.route.rpc, this.route.logger));
      }
      data = [messagePrefix(message.length), message];
    }
    this.finished = true;
    this.clearTimer();
    const headers = this.headersSent ? undefined : RESPONSE_HEADERS;
    this.headersSent = true;
    this.stream.connection.write(this.stream, headers, data, OK_TRAILERS);
  }

  private fail(status: GrpcStatusError): void {
    if (this.finished) return;
    this.finished = true;
    this.clearTimer();
    this.stream.connection.write(this.stream, undefined, undefined, statusBlock(status.code, status.message, !this.headersSent, status.httpStatus));
  }

  /** The request, or the status grpc-go answers for bytes that are not one. */
  private decode(message: Buffer): unknown {
    try {
      return this.route.deserialize(message);
    } catch (err) {
      throw new GrpcStatusError(grpc.status.INTERNAL, `grpc: error unmarshalling request: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** A response message within the size every client takes (grpc-go's check and words). */
  private encode(res: unknown, request?: Buffer): Buffer {
    const { memo } = this.route;
    const message = memo && request ? memo.encode(request, res) : this.route.serialize(res);
    if (message.length > MAX_MESSAGE) throw new GrpcStatusError(grpc.status.RESOURCE_EXHAUSTED, `grpc: trying to send message larger than max (${message.length} vs. ${MAX_MESSAGE})`);
    return message;
  }

  /** The handler settled. */
  private done(): void {
    const { state } = this;
    if (state.running.delete(this) && state.running.size === 0) state.idle?.();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** Answers a request that gets no call (bad method, path, content-type, timeout or encoding) with a status only. */
function refuse(stream: H2Stream, status: GrpcStatusError): void {
  stream.connection.write(stream, undefined, undefined, statusBlock(status.code, status.message, true, status.httpStatus));
}

/** The gRPC checks grpc-go makes of a request's headers, then its call. */
function onRequest(state: ServerState, stream: H2Stream, headers: HeaderField[], endStream: boolean): void {
  let method: string | undefined;
  let path: string | undefined;
  let contentType: string | undefined;
  let timeout: string | undefined;
  let encoding: string | undefined;
  for (const h of headers) {
    switch (h.name) {
      case ':method':
        method = h.value;
        break;
      case ':path':
        path = h.value;
        break;
      case 'content-type':
        contentType = h.value;
        break;
      case 'grpc-timeout':
        timeout = h.value;
        break;
      case 'grpc-encoding':
        encoding = h.value;
        break;
    }
  }
  if (method !== 'POST') return refuse(stream, new GrpcStatusError(grpc.status.INTERNAL, `Received a HEADERS frame with :method "${method ?? ''}" which should be POST`, 405));
  if (contentType === undefined || !/^application\/grpc($|[+;])/.test(contentType)) {
    return refuse(stream, new GrpcStatusError(grpc.status.INVALID_ARGUMENT, `invalid gRPC request content-type "${contentType ?? ''}"`, 415));
  }
  let timeoutMs: number | undefined;
  if (timeout !== undefined) {
    timeoutMs = parseGrpcTimeout(timeout);
    if (timeoutMs === undefined) return refuse(stream, new GrpcStatusError(grpc.status.INTERNAL, `malformed grpc-timeout: ${timeout}`, 400));
  }
  const route = path === undefined ? undefined : state.routes.get(path);
  if (!route) return refuse(stream, unknownPath(state, path ?? ''));
  if (!route.run) return refuse(stream, new GrpcStatusError(grpc.status.UNIMPLEMENTED, `${route.rpc} is not implemented yet`));
  if (!acceptsEncoding(encoding)) return refuse(stream, new GrpcStatusError(grpc.status.UNIMPLEMENTED, `grpc: Decompressor is not installed for grpc-encoding "${encoding}"`));
  const call = new Call(state, route, stream, encoding, timeoutMs);
  // HEADERS that end the stream carry no message: the call fails as one with an empty body.
  if (endStream) call.onData(Buffer.alloc(0), true);
}

function unknownPath(state: ServerState, path: string): GrpcStatusError {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
  if (!m) return new GrpcStatusError(grpc.status.UNIMPLEMENTED, `malformed method name: "${path}"`);
  if (!state.services.has(m[1]!)) return new GrpcStatusError(grpc.status.UNIMPLEMENTED, `unknown service ${m[1]}`);
  return new GrpcStatusError(grpc.status.UNIMPLEMENTED, `unknown method ${m[2]} for service ${m[1]}`);
}

function routes(handlers: CriHandlers, logger: Logger): ServerState['routes'] {
  const definition = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  const out = new Map<string, Route>();
  for (const service of ['runtime.v1.RuntimeService', 'runtime.v1.ImageService']) {
    for (const [rpc, method] of Object.entries(definition[service] as protoLoader.ServiceDefinition)) {
      const serialize = method.responseSerialize as (value: unknown) => Buffer;
      out.set(method.path, {
        rpc,
        deserialize: method.requestDeserialize,
        serialize,
        streaming: method.responseStream,
        run: (handlers as Record<string, UnaryRun | StreamRun | undefined>)[rpc],
        // One child logger per RPC, made here and not per call.
        logger: logger.child({ rpc }),
        memo: POLLED_RPCS.has(rpc) ? new ResponseMemo(serialize) : undefined,
      });
    }
  }
  return out;
}

/** Serves every CRI RPC on a unix socket (the socket file must not exist). */
export async function startCriServer(socketPath: string, handlers: CriHandlers, logger: Logger): Promise<CriServer> {
  const state: ServerState = { routes: routes(handlers, logger), services: new Set(['runtime.v1.RuntimeService', 'runtime.v1.ImageService']), running: new Set(), idle: undefined };
  const connections = new Set<H2Connection>();
  const listener = createServer((socket) => {
    socket.on('error', (err) => logger.debug({ err }, 'CRI connection failed'));
    const connection = new H2Connection(
      socket,
      (stream, headers, endStream) => onRequest(state, stream, headers, endStream),
      (err) => logger.warn({ err: err.message, h2Error: err.code }, 'closing a CRI connection: malformed HTTP/2 from the client'),
    );
    connections.add(connection);
    socket.on('close', () => connections.delete(connection));
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(socketPath, () => {
      listener.removeListener('error', reject);
      resolve();
    });
  });
  listener.on('error', (err) => logger.error({ err }, 'CRI socket listener failed'));
  await chmod(socketPath, 0o660);
  return {
    socketPath,
    async shutdown(graceMs: number): Promise<void> {
      listener.close();
      for (const c of connections) c.goAway();
      // Open-ended streams (GetContainerEvents) are told to finish now; unary calls get the grace period.
      for (const call of state.running) call.abortStream();
      if (state.running.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, graceMs);
          state.idle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      for (const c of connections) c.destroy();
    },
  };
}

/** A typed client for tests and `gvisor-cri ctl`. */
export function createCriClients(socketPath: string): {
  runtime: InstanceType<ProtoGrpcType['runtime']['v1']['RuntimeService']>;
  image: InstanceType<ProtoGrpcType['runtime']['v1']['ImageService']>;
  close(): void;
} {
  const proto = loadCriProto();
  const address = `unix://${socketPath}`;
  const credentials = grpc.credentials.createInsecure();
  const runtime = new proto.runtime.v1.RuntimeService(address, credentials);
  const image = new proto.runtime.v1.ImageService(address, credentials);
  return {
    runtime,
    image,
    close() {
      runtime.close();
      image.close();
    },
  };
}
