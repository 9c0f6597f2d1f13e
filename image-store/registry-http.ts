import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { CriError, GrpcStatus, deadlineExceeded, failedPrecondition, unavailable } from '../cri-api/errors.js';
import { bulkGet } from './bulk-http.js';

/** A response whose body has not been read yet: the caller consumes or discards it. */
export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Readable;
  /** Final URL after redirects. */
  url: URL;
}

export interface HttpRequestOptions {
  method?: 'GET' | 'HEAD' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** PEM file of an extra CA for https. */
  caFile?: string;
  /** The request fails when the socket sees no traffic for this long. */
  idleTimeoutMs: number;
  signal?: AbortSignal;
  /** What is being fetched, for error messages ("manifest of docker.io/library/busybox:latest"). */
  what: string;
  /** A GET of a blob: read through one kept buffer, and the body can be drained (bulk-http.ts). */
  bulk?: boolean;
}

const MAX_REDIRECTS = 5;
const agents = new Map<string, https.Agent>();
const contexts = new Map<string, SecureContext>();

/**
 * The TLS context of requests to a registry with its own CA file, made once
 * per file and shared by the keep-alive agent and blob downloads: each new
 * one reads the file and parses every root certificate, and an agent given
 * only `ca` made one per connection.
 */
function trustedContext(caFile: string): SecureContext {
  let context = contexts.get(caFile);
  if (!context) {
    // The extra CA adds to the system roots instead of replacing them.
    context = createSecureContext({ ca: [...rootCertificates, readFileSync(caFile, 'utf8')] });
    contexts.set(caFile, context);
  }
  return context;
}

function httpsAgent(caFile: string | undefined): https.Agent {
  const key = caFile ?? '';
  let agent = agents.get(key);
  if (!agent) {
    agent = new https.Agent({ keepAlive: true, secureContext: caFile ? trustedContext(caFile) : undefined });
    agents.set(key, agent);
  }
  return agent;
}

const httpAgent = new http.Agent({ keepAlive: true });

/** A network-level failure: "try another endpoint" / "the registry is down". */
export class HttpNetworkError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = 'HttpNetworkError';
    this.code = code;
  }
}

/** True for errors of a TLS handshake against a server that speaks plain HTTP. */
export function isTlsProtocolError(err: unknown): boolean {
  return err instanceof HttpNetworkError && (/^ERR_SSL_|^EPROTO$/.test(err.code) || /wrong version number|packet length too long/i.test(err.message));
}

function describeNetworkError(err: NodeJS.ErrnoException, url: URL): HttpNetworkError {
  const code = err.code ?? 'UNKNOWN';
  const host = url.host;
  if (code === 'ECONNREFUSED') return new HttpNetworkError(`connection to ${host} refused`, code);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new HttpNetworkError(`cannot resolve ${url.hostname}`, code);
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT/.test(code)) {
    return new HttpNetworkError(`TLS certificate of ${host} not trusted (${err.message}); set ca_file for this registry`, code);
  }
  return new HttpNetworkError(`request to ${host} failed: ${err.message}`, code);
}

/** The headers with Authorization removed, whatever its case. */
function withoutAuthorization(headers: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(headers ?? {}).filter(([name]) => name.toLowerCase() !== 'authorization'));
}

/**
 * One HTTP(S) request with redirects followed. Credentials (the
 * Authorization header, and a body, which for us is only ever the token
 * POST's form with a refresh token) go only to the origin first asked:
 * scheme, host and port. Registries redirect blob downloads to storage
 * servers that must not see the registry token, and an https origin that
 * redirects to http on the same host is another origin, so a token never
 * crosses the network in clear because of a redirect.
 */
export async function httpRequest(url: URL, opts: HttpRequestOptions): Promise<HttpResponse> {
  let current = url;
  let method: HttpRequestOptions['method'] = opts.method ?? 'GET';
  let body = opts.body;
  let headers = { ...opts.headers };
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const sameOrigin = current.origin === url.origin;
    if (!sameOrigin && body !== undefined) {
      throw failedPrecondition(`${opts.what}: ${url.origin} redirected a request that carries credentials to ${current.origin}; it is not sent there`);
    }
    const res = await requestOnce(current, { ...opts, method, body, headers: sameOrigin ? headers : withoutAuthorization(headers) });
    if ([301, 302, 303, 307, 308].includes(res.status) && res.headers.location) {
      res.body.resume();
      current = new URL(res.headers.location, current);
      // 303 asks for a GET of the new location: the body stays behind.
      if (res.status === 303 && method === 'POST') {
        method = 'GET';
        body = undefined;
        headers = Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'content-type'));
      }
      continue;
    }
    return res;
  }
  throw unavailable(`${opts.what}: more than ${MAX_REDIRECTS} redirects from ${url.host}`);
}

function requestOnce(url: URL, opts: HttpRequestOptions): Promise<HttpResponse> {
  if (opts.bulk && (opts.method ?? 'GET') === 'GET' && opts.body === undefined) return bulkRequest(url, opts);
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(opts.signal.reason);
      return;
    }
    const isHttps = url.protocol === 'https:';
    const options: https.RequestOptions = {
      method: opts.method ?? 'GET',
      headers: { 'User-Agent': 'gvisor-cri', ...opts.headers },
      agent: isHttps ? httpsAgent(opts.caFile) : httpAgent,
      signal: opts.signal,
    };
    const req = (isHttps ? https : http).request(url, options, (res) => {
      // From here on watchIdle() guards the body: it can fail the body stream
      // with a clear error, which destroying the request cannot.
      req.setTimeout(0);
      const body = watchIdle(res, opts.idleTimeoutMs, () => `${opts.what}: no data from ${url.host} for ${Math.round(opts.idleTimeoutMs / 1000)}s, aborted`);
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body, url });
    });
    req.setTimeout(opts.idleTimeoutMs, () => {
      req.destroy(deadlineExceeded(`${opts.what}: no data from ${url.host} for ${Math.round(opts.idleTimeoutMs / 1000)}s, aborted`));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.name === 'CriError' || err.name === 'AbortError') reject(err);
      else reject(describeNetworkError(err, url));
    });
    req.end(opts.body);
  });
}

async function bulkRequest(url: URL, opts: HttpRequestOptions): Promise<HttpResponse> {
  try {
    const res = await bulkGet(url, {
      headers: { 'User-Agent': 'gvisor-cri', ...opts.headers },
      secureContext: url.protocol === 'https:' && opts.caFile ? trustedContext(opts.caFile) : undefined,
      idleTimeoutMs: opts.idleTimeoutMs,
      idleError: () => deadlineExceeded(`${opts.what}: no data from ${url.host} for ${Math.round(opts.idleTimeoutMs / 1000)}s, aborted`),
      signal: opts.signal,
    });
    return { ...res, url };
  } catch (err) {
    if (err instanceof Error && (err.name === 'CriError' || err.name === 'AbortError')) throw err;
    throw describeNetworkError(err as NodeJS.ErrnoException, url);
  }
}

/** The body as a stream that fails with DEADLINE_EXCEEDED when no byte arrives for `ms`. */
function watchIdle(res: http.IncomingMessage, ms: number, message: () => string): Readable {
  const timer = setTimeout(fire, ms);
  const out = new Transform({
    transform(chunk: Buffer, _enc, done) {
      // Restarts the countdown in place: a body comes in thousands of chunks.
      timer.refresh();
      done(null, chunk);
    },
  });
  function fire(): void {
    const err = deadlineExceeded(message());
    out.destroy(err);
    res.destroy(err);
  }
  res.on('error', (err) => out.destroy(err));
  out.on('close', () => {
    clearTimeout(timer);
    if (!res.complete) res.destroy();
  });
  res.on('end', () => clearTimeout(timer));
  return res.pipe(out);
}

/** Reads a whole (small) body, refusing anything larger than `limit` bytes as soon as it is known to be. */
export async function readBody(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
  const tooLarge = (): CriError => new CriError(GrpcStatus.RESOURCE_EXHAUSTED, `${what}: response from ${res.url.host} is over the ${limit}-byte limit`);
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    res.body.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.body.destroy();
      throw tooLarge();
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
