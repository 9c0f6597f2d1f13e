/**
 * The gRPC-over-HTTP/2 pieces that are not HTTP/2: the grpc-timeout header,
 * grpc-message encoding, the length-prefixed request message and the
 * response's constant header blocks.
 */
import { gunzipSync, inflateSync } from 'node:zlib';
import { status } from '@grpc/grpc-js';
import { encodeHeaders, type HeaderField } from './hpack.js';

/** The largest request message we take, compressed or not (grpc-js's default, which kubelet's requests fit). */
export const MAX_MESSAGE = 16 * 1024 * 1024;

const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** A grpc-timeout value ("1-8 digits" then H M S m u n) in milliseconds; undefined when malformed. */
export function parseGrpcTimeout(value: string): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m ? Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]! : undefined;
}

/** grpc-message is percent-encoded UTF-8: every octet outside 0x20-0x7E, and `%` itself, as %XX. */
export function encodeGrpcMessage(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const field = (name: string, value: string): HeaderField => ({ name, value, sensitive: false });
const RESPONSE_FIELDS = [field(':status', '200'), field('content-type', 'application/grpc'), field('grpc-accept-encoding', 'identity,deflate,gzip')];

/** The response headers of every call that answers with a message. */
export const RESPONSE_HEADERS = encodeHeaders(RESPONSE_FIELDS);
/** The trailers of every call that succeeds. */
export const OK_TRAILERS = encodeHeaders([field('grpc-status', '0')]);

/** Trailers with a status; `withHeaders` for a trailers-only answer (nothing was sent before), `httpStatus` for one that is not 200. */
export function statusBlock(code: status, message: string, withHeaders: boolean, httpStatus = 200): Buffer {
  const fields: HeaderField[] = [];
  if (withHeaders) fields.push(field(':status', String(httpStatus)), ...RESPONSE_FIELDS.slice(1));
  fields.push(field('grpc-status', String(code)));
  if (message !== '') fields.push(field('grpc-message', encodeGrpcMessage(message)));
  return encodeHeaders(fields);
}

/** A status a call ends with. */
export class GrpcStatusError extends Error {
  constructor(
    readonly code: status,
    message: string,
    readonly httpStatus = 200,
  ) {
    super(message);
  }
}

/** The length prefix (compressed flag and length) followed by the message. */
export function messagePrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

/** Message compression a request may use (grpc-encoding); anything else is refused at its headers. */
export function acceptsEncoding(encoding: string | undefined): boolean {
  return encoding === undefined || encoding === 'identity' || encoding === 'gzip' || encoding === 'deflate';
}

/**
 * Collects the one request message of a call from its DATA, as it arrives.
 * Throws GrpcStatusError with the status grpc-go answers for a message too
 * large, a second message, none at all or one cut short.
 */
export class RequestReader {
  private parts: Buffer[] = [];
  private have = 0;
  /** The declared length of the message once its prefix is in. */
  private length = -1;

  constructor(private readonly encoding: string | undefined) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.parts.push(chunk);
    this.have += chunk.length;
    if (this.length < 0 && this.have >= 5) {
      const head = this.parts.length === 1 ? chunk : Buffer.concat(this.parts);
      this.length = head.readUInt32BE(1);
      if (this.length > MAX_MESSAGE) throw new GrpcStatusError(status.RESOURCE_EXHAUSTED, `grpc: received message larger than max (${this.length} vs. ${MAX_MESSAGE})`);
    }
    if (this.length >= 0 && this.have > this.length + 5) throw new GrpcStatusError(status.INTERNAL, 'cardinality violation: received multiple request messages for non-client-streaming RPC');
  }

  /** The message, once the client ended its side. */
  message(): Buffer {
    if (this.have === 0) throw new GrpcStatusError(status.INTERNAL, 'cardinality violation: received no request message from non-client-streaming RPC');
    if (this.length < 0 || this.have < this.length + 5) throw new GrpcStatusError(status.INTERNAL, 'unexpected EOF');
    const whole = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.have);
    const body = whole.subarray(5);
    if (whole[0] === 0) return body;
    if (this.encoding === undefined || this.encoding === 'identity') throw new GrpcStatusError(status.INTERNAL, 'grpc: compressed flag set with identity or empty encoding');
    try {
      return (this.encoding === 'gzip' ? gunzipSync : inflateSync)(body, { maxOutputLength: MAX_MESSAGE });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new GrpcStatusError(status.RESOURCE_EXHAUSTED, `grpc: received message after decompression larger than max ${MAX_MESSAGE}`);
      throw new GrpcStatusError(status.INTERNAL, `grpc: failed to decompress the received message: ${(err as Error).message}`);
    }
  }
}
