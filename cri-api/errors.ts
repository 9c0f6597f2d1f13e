/**
 * gRPC status codes, as the gRPC spec fixes them. Not taken from grpc-js:
 * loading it costs ~80 ms of CPU, which every layer-unpack worker (whose
 * errors are CriErrors) paid on each start.
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/**
 * An error that crosses the CRI boundary with a definite gRPC status.
 * Modules throw these (through the helpers below) so that one place, the
 * server wrapper, maps every failure to a status kubelet understands.
 */
export class CriError extends Error {
  readonly code: GrpcStatus;

  constructor(code: GrpcStatus, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CriError';
    this.code = code;
  }
}

export const invalidArgument = (message: string): CriError => new CriError(GrpcStatus.INVALID_ARGUMENT, message);
export const notFound = (message: string): CriError => new CriError(GrpcStatus.NOT_FOUND, message);
export const alreadyExists = (message: string): CriError => new CriError(GrpcStatus.ALREADY_EXISTS, message);
export const failedPrecondition = (message: string): CriError => new CriError(GrpcStatus.FAILED_PRECONDITION, message);
export const deadlineExceeded = (message: string): CriError => new CriError(GrpcStatus.DEADLINE_EXCEEDED, message);
export const unavailable = (message: string): CriError => new CriError(GrpcStatus.UNAVAILABLE, message);
export const unauthenticated = (message: string): CriError => new CriError(GrpcStatus.UNAUTHENTICATED, message);
export const permissionDenied = (message: string): CriError => new CriError(GrpcStatus.PERMISSION_DENIED, message);
export const unimplemented = (message: string): CriError => new CriError(GrpcStatus.UNIMPLEMENTED, message);
export const internal = (message: string, cause?: unknown): CriError => new CriError(GrpcStatus.INTERNAL, message, { cause });

/**
 * Prefixes an error's message with the step that was being attempted, keeping
 * its status, so one line tells the whole story ("run pod sandbox x: CNI ADD: ...").
 */
export function wrapError(err: unknown, context: string): CriError {
  if (err instanceof CriError) return new CriError(err.code, `${context}: ${err.message}`, { cause: err });
  const message = err instanceof Error ? err.message : String(err);
  return new CriError(GrpcStatus.INTERNAL, `${context}: ${message}`, { cause: err });
}

