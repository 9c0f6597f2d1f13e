/**
 * The daemon's CRI services as promise-returning calls with a deadline, and
 * the one place that turns a failed call into the line an operator reads.
 */
import * as grpc from '@grpc/grpc-js';
import { createCriClients } from '../cri-api/server.js';

export type CriClients = ReturnType<typeof createCriClients>;

/** A failure that ends the command: `gvisor-cri ctl: <message>`, exit code 1 (or 2 for usage). */
export class CtlError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2 = 1, cause?: unknown) {
    super(message, { cause });
    this.name = 'CtlError';
  }
}

export const usageError = (message: string): CtlError => new CtlError(message, 2);

function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number' && 'details' in err;
}

/** The gRPC status code behind a failed call (a ServiceError, or a CtlError describing one). */
export function grpcCode(err: unknown): grpc.status | undefined {
  if (isServiceError(err)) return err.code;
  return err instanceof CtlError ? grpcCode(err.cause) : undefined;
}

export class CtlClient {
  readonly runtime: CriClients['runtime'];
  readonly image: CriClients['image'];
  private readonly clients: CriClients;

  constructor(readonly socket: string, private readonly timeoutMs: number) {
    this.clients = createCriClients(socket);
    this.runtime = this.clients.runtime;
    this.image = this.clients.image;
  }

  /**
   * Runs one unary call: `what` names the step for the error line,
   * `extraMs` extends the deadline for calls that wait by design (stop, pull, exec).
   */
  async call<Res>(what: string, start: (opts: grpc.CallOptions, cb: grpc.requestCallback<Res>) => void, extraMs = 0): Promise<Res> {
    const deadline = Date.now() + this.timeoutMs + extraMs;
    try {
      return await new Promise<Res>((resolve, reject) => {
        start({ deadline }, (err, res) => (err ? reject(err) : resolve(res as Res)));
      });
    } catch (err) {
      throw this.describe(err, what);
    }
  }

  /** One line naming the step and the daemon's answer, with a hint where the status alone would puzzle. */
  describe(err: unknown, what: string): CtlError {
    if (!isServiceError(err)) return new CtlError(`${what}: ${err instanceof Error ? err.message : String(err)}`, 1, err);
    // grpc-js appends an empty "Resolution note:" to connection failures.
    const details = (err.details || grpc.status[err.code]).replace(/\s*Resolution note:\s*$/, '');
    const line = ((): string => {
      switch (err.code) {
        case grpc.status.UNAVAILABLE:
          return `${what}: cannot reach the daemon at ${this.socket} (is gvisor-cri running? see --socket): ${details}`;
        case grpc.status.DEADLINE_EXCEEDED:
          return `${what}: no answer within the deadline (raise --timeout): ${details}`;
        case grpc.status.UNIMPLEMENTED:
          return `${what}: the daemon does not implement this RPC: ${details}`;
        default:
          return `${what}: ${details}`;
      }
    })();
    return new CtlError(line, 1, err);
  }

  close(): void {
    this.clients.close();
  }
}
