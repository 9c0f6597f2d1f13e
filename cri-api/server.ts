import { chmod } from 'node:fs/promises';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from './generated/api.js';
import type { RuntimeServiceHandlers } from './generated/runtime/v1/RuntimeService.js';
import type { ImageServiceHandlers } from './generated/runtime/v1/ImageService.js';
import { CriError } from './errors.js';
import { filterConnection } from './authority-filter.js';
import type { Logger } from './logger.js';

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

function toServiceError(err: unknown, rpc: string, logger: Logger): Partial<grpc.StatusObject> {
  if (err instanceof CriError) return { code: err.code, details: err.message };
  logger.error({ err, rpc }, 'unexpected error in handler');
  const message = err instanceof Error ? err.message : String(err);
  return { code: grpc.status.INTERNAL, details: `${rpc}: ${message}` };
}

const DEADLINE_CANCEL_SLACK_MS = 100;

function callSignal(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, controller = new AbortController()): { signal: AbortSignal; done: () => void } {
  const deadline = call.getDeadline();
  const deadlineAt = deadline instanceof Date ? deadline.getTime() : Number.isFinite(deadline) ? Number(deadline) : Infinity;
  const ms = deadlineAt - Date.now();
  // A client cancels the stream at its own deadline, which the server's (counted from the request's arrival) trails by the transit time:
  // a cancel that close to the deadline is the deadline, for the logs and the reason the work stopped.
  const onCancel = (): void =>
    controller.abort(Date.now() >= deadlineAt - DEADLINE_CANCEL_SLACK_MS ? new CriError(grpc.status.DEADLINE_EXCEEDED, 'deadline exceeded') : new CriError(grpc.status.CANCELLED, 'call cancelled by the client'));
  call.on('cancelled', onCancel);
  const timer = Number.isFinite(ms) ? setTimeout(() => controller.abort(new CriError(grpc.status.DEADLINE_EXCEEDED, 'deadline exceeded')), Math.max(0, ms)) : undefined;
  return {
    signal: controller.signal,
    done: () => {
      if (timer) clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
    },
  };
}

function implementation(
  service: grpc.ServiceDefinition,
  handlers: CriHandlers,
  logger: Logger,
  inflight: Set<Promise<unknown>>,
  streams: Set<AbortController>,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [rpc, method] of Object.entries(service)) {
    const handler = (handlers as Record<string, ((...args: never[]) => Promise<unknown>) | undefined>)[rpc];
    const rpcLogger = logger.child({ rpc });
    const track = <T>(p: Promise<T>): Promise<T> => {
      inflight.add(p);
      void p.finally(() => inflight.delete(p)).catch(() => undefined);
      return p;
    };
    if (method.responseStream) {
      impl[rpc] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        if (!handler) {
          call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: `${rpc} is not implemented yet` });
          return;
        }
        // Aborted at shutdown too: a stream that never ends (GetContainerEvents) must not hold the server open.
        const controller = new AbortController();
        streams.add(controller);
        const { signal, done: callDone } = callSignal(call, controller);
        const done = (): void => {
          streams.delete(controller);
          callDone();
        };
        // Honour back-pressure so one slow subscriber cannot grow the daemon's memory without bound.
        const send = (res: unknown): Promise<void> =>
          new Promise((resolve) => {
            if (call.write(res)) resolve();
            else call.once('drain', () => resolve());
          });
        const run = handler as unknown as (req: unknown, send: (res: unknown) => Promise<void>, ctx: CallContext) => Promise<void>;
        void track(
          run(call.request, send, { logger: rpcLogger, signal })
            .then(() => call.end())
            .catch((err: unknown) => call.emit('error', toServiceError(err, rpc, rpcLogger)))
            .finally(done),
        );
      };
    } else {
      impl[rpc] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (!handler) {
          callback({ code: grpc.status.UNIMPLEMENTED, details: `${rpc} is not implemented yet` });
          return;
        }
        const { signal, done } = callSignal(call);
        const run = handler as unknown as (req: unknown, ctx: CallContext) => Promise<unknown>;
        const started = process.hrtime.bigint();
        void track(
          run(call.request, { logger: rpcLogger, signal })
            .then(
              (res) => {
                rpcLogger.debug({ ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'ok');
                callback(null, res);
              },
              (err: unknown) => {
                const status = toServiceError(err, rpc, rpcLogger);
                rpcLogger.debug({ code: status.code, details: status.details }, 'failed');
                callback(status);
              },
            )
            .finally(done),
        );
      };
    }
  }
  return impl;
}

/** Serves every CRI RPC on a unix socket (the socket file must not exist). */
export async function startCriServer(socketPath: string, handlers: CriHandlers, logger: Logger): Promise<CriServer> {
  const proto = loadCriProto();
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024, 'grpc.max_send_message_length': 16 * 1024 * 1024 });
  const inflight = new Set<Promise<unknown>>();
  const streams = new Set<AbortController>();
  server.addService(proto.runtime.v1.RuntimeService.service, implementation(proto.runtime.v1.RuntimeService.service, handlers, logger, inflight, streams));
  server.addService(proto.runtime.v1.ImageService.service, implementation(proto.runtime.v1.ImageService.service, handlers, logger, inflight, streams));
  // We accept connections ourselves so that each one passes the authority filter on its way to grpc-js.
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listener = createServer((socket) => injector.injectConnection(filterConnection(socket, logger)));
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
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
        // No new calls from here on; open-ended streams are told to finish now.
        for (const c of streams) c.abort(new CriError(grpc.status.UNAVAILABLE, 'server shutting down'));
      });
      await Promise.race([Promise.allSettled([...inflight]), new Promise((r) => setTimeout(r, 100))]);
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
