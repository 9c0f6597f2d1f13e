import { status } from '@grpc/grpc-js';

/**
 * An error that crosses the CRI boundary with a definite gRPC status.
 * Modules throw these (through the helpers below) so that one place, the
 * server wrapper, maps every failure to a status kubelet understands.
 */
export class CriError extends Error {
  readonly code: status;

  constructor(code: status, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CriError';
    this.code = code;
  }
}

export const invalidArgument = (message: string): CriError => new CriError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string): CriError => new CriError(status.NOT_FOUND, message);
export const alreadyExists = (message: string): CriError => new CriError(status.ALREADY_EXISTS, message);
export const failedPrecondition = (message: string): CriError => new CriError(status.FAILED_PRECONDITION, message);
export const deadlineExceeded = (message: string): CriError => new CriError(status.DEADLINE_EXCEEDED, message);
export const unavailable = (message: string): CriError => new CriError(status.UNAVAILABLE, message);
export const unauthenticated = (message: string): CriError => new CriError(status.UNAUTHENTICATED, message);
export const permissionDenied = (message: string): CriError => new CriError(status.PERMISSION_DENIED, message);
export const unimplemented = (message: string): CriError => new CriError(status.UNIMPLEMENTED, message);
export const internal = (message: string, cause?: unknown): CriError => new CriError(status.INTERNAL, message, { cause });

/**
 * Prefixes an error's message with the step that was being attempted, keeping
 * its status, so one line tells the whole story ("run pod sandbox x: CNI ADD: ...").
 */
export function wrapError(err: unknown, context: string): CriError {
  if (err instanceof CriError) return new CriError(err.code, `${context}: ${err.message}`, { cause: err });
  const message = err instanceof Error ? err.message : String(err);
  return new CriError(status.INTERNAL, `${context}: ${message}`, { cause: err });
}

export { status as GrpcStatus };
