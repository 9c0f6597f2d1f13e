import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { RegistryConfig } from '../daemon/config.js';
import { CriError, GrpcStatus, failedPrecondition, internal, notFound, permissionDenied, unauthenticated, unavailable } from '../cri-api/errors.js';
import type { Logger } from '../cri-api/logger.js';
import { BulkBody } from './bulk-http.js';
import { httpRequest, isTlsProtocolError, readBody, HttpNetworkError, type HttpResponse } from './registry-http.js';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES } from './manifest.js';
import { DEFAULT_DOMAIN, type ImageReference } from './reference.js';

/** Registry credentials as CRI's AuthConfig carries them. */
export interface AuthCredentials {
  username?: string;
  password?: string;
  /** base64 of "user:password". */
  auth?: string;
  /** An OAuth2 refresh token, exchanged at the token server. */
  identityToken?: string;
  /** A bearer token sent to the registry as it is. */
  registryToken?: string;
}

export interface RegistryClientOptions {
  registries: Record<string, RegistryConfig>;
  idleTimeoutMs: number;
  logger: Logger;
}

interface Endpoint {
  /** "https://registry-1.docker.io" or a mirror's base URL, without "/v2". */
  base: URL;
  caFile?: string;
  mirror: boolean;
  /** Loopback registry with no config: https first, plain http when it does not speak TLS. */
  httpFallback: boolean;
  /** Plain HTTP may carry credentials to this endpoint and its token realm (configured insecure). */
  insecure: boolean;
  /**
   * Credentials for this endpoint alone: the pull's AuthConfig for the
   * image's own registry, the configured ones for a mirror, so one
   * registry's secrets never reach another host.
   */
  credentials: AuthCredentials | undefined;
  authorization?: string;
}

export interface FetchedManifest {
  bytes: Buffer;
  contentType: string | undefined;
  digest: string;
}

const MAX_TOKEN_BYTES = 1024 * 1024;
/** Hosts found to speak plain HTTP, so later sessions skip the TLS attempt. */
const plainHttpHosts = new Set<string>();

function isLoopback(host: string): boolean {
  const hostname = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  if (hostname === 'localhost') return true;
  if (isIP(hostname) === 4) return hostname.startsWith('127.');
  return hostname === '::1';
}

const sha256hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Credentials configured for a host (README, "Registries"), in AuthConfig's shape. */
function configuredCredentials(config: RegistryConfig | undefined): AuthCredentials | undefined {
  if (config?.auth !== undefined) return { auth: config.auth };
  if (config?.username !== undefined) return { username: config.username, password: config.password };
  return undefined;
}

const isEmpty = (auth: AuthCredentials | undefined): boolean => !auth || Object.values(auth).every((v) => v === undefined || v === '');

function basicCredentials(auth: AuthCredentials | undefined): { username: string; password: string } | undefined {
  if (!auth) return undefined;
  if (auth.username || auth.password) return { username: auth.username ?? '', password: auth.password ?? '' };
  if (auth.auth) {
    const decoded = Buffer.from(auth.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw unauthenticated('registry credentials: "auth" is not base64 of "user:password"');
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (and Basic). */
function parseChallenge(header: string | undefined): { scheme: string; params: Record<string, string> } | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1].toLowerCase()] = p[2] ?? p[3] ?? '';
  return { scheme: m[1].toLowerCase(), params };
}

/**
 * Talks to one repository of one registry for one pull: endpoint choice
 * (mirrors first), authentication, manifests and blobs. Credentials stay in
 * this object and never enter a message or a log line.
 */
export class RegistrySession {
  private readonly endpoints: Endpoint[];
  /** Index of the endpoint that served the manifest: blobs come from there first. */
  private preferred = 0;

  constructor(
    private readonly ref: ImageReference,
    auth: AuthCredentials | undefined,
    private readonly opts: RegistryClientOptions,
  ) {
    const config = opts.registries[ref.domain];
    const host = ref.domain === DEFAULT_DOMAIN ? 'registry-1.docker.io' : ref.domain;
    this.endpoints = [];
    for (const mirror of config?.mirrors ?? []) {
      const base = new URL(mirror.replace(/\/+$/, '').replace(/\/v2$/, ''));
      const own = opts.registries[base.host];
      this.endpoints.push({
        base,
        caFile: own?.ca_file ?? config?.ca_file,
        mirror: true,
        httpFallback: false,
        insecure: own?.insecure === true,
        credentials: configuredCredentials(own),
      });
    }
    const insecure = config?.insecure === true;
    const loopback = isLoopback(host) && !config?.ca_file;
    const plain = insecure || (loopback && plainHttpHosts.has(host));
    const credentials = isEmpty(auth) ? configuredCredentials(config) : auth;
    this.endpoints.push({
      base: new URL(`${plain ? 'http' : 'https'}://${host}`),
      caFile: config?.ca_file,
      mirror: false,
      httpFallback: loopback && !plain,
      insecure,
      credentials,
      authorization: credentials?.registryToken ? `Bearer ${credentials.registryToken}` : undefined,
    });
  }

  private get repo(): string {
    return `${this.ref.domain}/${this.ref.path}`;
  }

  /** Fetches a manifest by tag or digest, verifying it when asked by digest. */
  async getManifest(reference: string, signal: AbortSignal | undefined): Promise<FetchedManifest> {
    const what = `manifest ${reference} of ${this.repo}`;
    return this.tryEndpoints(0, what, async (endpoint, index) => {
      const res = await this.send(endpoint, `/v2/${this.ref.path}/manifests/${reference}`, { Accept: MANIFEST_ACCEPT }, signal, what);
      if (res.status === 404) {
        res.body.resume();
        throw notFound(`image "${this.repo}${reference.startsWith('sha256:') ? '@' : ':'}${reference}" not found at ${endpoint.base.host}`);
      }
      await this.checkStatus(res, endpoint, what);
      const bytes = await readBody(res, MAX_MANIFEST_BYTES, what);
      const digest = `sha256:${sha256hex(bytes)}`;
      if (reference.startsWith('sha256:') && digest !== reference) {
        throw new CriError(GrpcStatus.DATA_LOSS, `${what}: content from ${endpoint.base.host} has digest ${digest}, not the requested one`);
      }
      this.preferred = index;
      return { bytes, contentType: res.headers['content-type'], digest };
    });
  }

  /** Opens a blob for draining; the caller verifies its digest while reading. */
  async openBlob(digest: string, signal: AbortSignal | undefined): Promise<BulkBody> {
    const what = `blob ${digest} of ${this.repo}`;
    return this.tryEndpoints(this.preferred, what, async (endpoint) => {
      const res = await this.send(endpoint, `/v2/${this.ref.path}/blobs/${digest}`, {}, signal, what, true);
      if (res.status === 404) {
        res.body.resume();
        throw notFound(`${what}: not found at ${endpoint.base.host}`);
      }
      await this.checkStatus(res, endpoint, what);
      if (!(res.body instanceof BulkBody)) throw internal(`${what}: the answer from ${res.url.host} came without a drainable body`);
      return res.body;
    });
  }

  /** Mirrors that fail are skipped (with a warning); the registry's own failure is the answer. */
  private async tryEndpoints<T>(start: number, what: string, attempt: (e: Endpoint, index: number) => Promise<T>): Promise<T> {
    for (let i = start; i < this.endpoints.length; i++) {
      const endpoint = this.endpoints[i];
      try {
        return await attempt(endpoint, i);
      } catch (err) {
        const last = i === this.endpoints.length - 1;
        if (err instanceof HttpNetworkError) {
          if (last) throw unavailable(`${what}: registry unreachable: ${err.message}`);
        } else if (last || (err instanceof Error && err.name === 'AbortError')) {
          throw err;
        }
        this.opts.logger.warn({ image: this.repo, mirror: endpoint.base.host, err: (err as Error).message }, `${what}: mirror failed, trying next endpoint`);
      }
    }
    throw unavailable(`${what}: no endpoint left to try`);
  }

  /** One request with the endpoint's authorization, answering one auth challenge. */
  private async send(endpoint: Endpoint, path: string, headers: Record<string, string>, signal: AbortSignal | undefined, what: string, bulk = false): Promise<HttpResponse> {
    const request = async (): Promise<HttpResponse> => {
      const url = new URL(endpoint.base.pathname.replace(/\/$/, '') + path, endpoint.base);
      if (endpoint.authorization) this.checkTransport(url, endpoint, what);
      const h = endpoint.authorization ? { ...headers, Authorization: endpoint.authorization } : headers;
      try {
        return await httpRequest(url, { headers: h, caFile: endpoint.caFile, idleTimeoutMs: this.opts.idleTimeoutMs, signal, what, bulk });
      } catch (err) {
        if (endpoint.httpFallback && isTlsProtocolError(err)) {
          endpoint.httpFallback = false;
          endpoint.base = new URL(`http://${endpoint.base.host}`);
          plainHttpHosts.add(endpoint.base.host);
          return request();
        }
        throw err;
      }
    };
    const res = await request();
    if (res.status !== 401 || endpoint.authorization) return res;
    res.body.resume();
    endpoint.authorization = await this.authorize(endpoint, res.headers['www-authenticate'], signal, what);
    return request();
  }

  private async authorize(endpoint: Endpoint, header: string | string[] | undefined, signal: AbortSignal | undefined, what: string): Promise<string> {
    const challenge = parseChallenge(Array.isArray(header) ? header[0] : header);
    if (challenge?.scheme === 'basic') {
      const basic = basicCredentials(endpoint.credentials);
      if (!basic) throw unauthenticated(`${what}: ${endpoint.base.host} requires credentials and none were given`);
      return `Basic ${Buffer.from(`${basic.username}:${basic.password}`).toString('base64')}`;
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) {
      throw unauthenticated(`${what}: ${endpoint.base.host} answered 401 with no usable authentication challenge`);
    }
    const token = await this.fetchToken(endpoint, challenge.params, signal, what);
    return `Bearer ${token}`;
  }

  /**
   * Credentials cross the network in clear only to a host the operator
   * configured insecure, or on loopback: a plain http:// URL elsewhere (a
   * token realm a registry names, an http mirror) gets none.
   */
  private checkTransport(url: URL, endpoint: Endpoint, what: string): void {
    if (url.protocol === 'https:' || isLoopback(url.host) || endpoint.insecure || this.opts.registries[url.host]?.insecure === true) return;
    throw failedPrecondition(`${what}: ${url.origin} is plain HTTP and not configured insecure; credentials and tokens are not sent there (use https, or set insecure = true for "${url.host}")`);
  }

  /** Docker token flow: basic credentials on GET, or an identity (refresh) token on POST. */
  private async fetchToken(endpoint: Endpoint, params: Record<string, string>, signal: AbortSignal | undefined, what: string): Promise<string> {
    let realm: URL;
    try {
      realm = new URL(params.realm);
    } catch {
      throw unavailable(`${what}: ${endpoint.base.host} named a token realm that is not a URL`);
    }
    const step = `${what}: token from ${realm.host}`;
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw unavailable(`${step}: realm scheme ${realm.protocol} is not http(s)`);
    // Even an anonymous token is refused over clear text: it would grant what the next request asks for.
    this.checkTransport(realm, endpoint, step);
    const scope = `repository:${this.ref.path}:pull`;
    const service = params.service ?? '';
    const common = { caFile: this.opts.registries[realm.host]?.ca_file ?? endpoint.caFile, idleTimeoutMs: this.opts.idleTimeoutMs, signal, what: step };
    const credentials = endpoint.credentials;
    const basic = basicCredentials(credentials);
    let res: HttpResponse;
    if (credentials?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credentials.identityToken, service, scope, client_id: 'gvisor-cri' });
      res = await httpRequest(realm, { ...common, method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString() });
    } else {
      realm.searchParams.set('service', service);
      realm.searchParams.set('scope', scope);
      const headers: Record<string, string> = {};
      if (basic) {
        headers.Authorization = `Basic ${Buffer.from(`${basic.username}:${basic.password}`).toString('base64')}`;
        realm.searchParams.set('account', basic.username);
      }
      res = await httpRequest(realm, { ...common, headers });
    }
    if (res.status === 401) {
      res.body.resume();
      throw unauthenticated(`${step}: credentials rejected (401)`);
    }
    if (res.status === 403) {
      res.body.resume();
      throw permissionDenied(`${step}: access to ${this.repo} denied (403)`);
    }
    if (res.status !== 200) {
      res.body.resume();
      throw unavailable(`${step}: token server answered ${res.status}`);
    }
    const body = await readBody(res, MAX_TOKEN_BYTES, step);
    let token: unknown;
    try {
      const doc = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      token = doc.token ?? doc.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token === '') throw unavailable(`${step}: answer holds no token`);
    return token;
  }

  private async checkStatus(res: HttpResponse, endpoint: Endpoint, what: string): Promise<void> {
    if (res.status === 200) return;
    res.body.resume();
    const host = endpoint.base.host;
    if (res.status === 401) {
      const given = endpoint.credentials;
      const how = given?.registryToken ? 'with the given registry token' : basicCredentials(given) || given?.identityToken ? 'with the given credentials' : 'anonymously; credentials are needed';
      throw unauthenticated(`${what}: ${host} refused access ${how} (or the repository does not exist)`);
    }
    if (res.status === 403) throw permissionDenied(`${what}: ${host} denied access (403)`);
    if (res.status === 429) throw unavailable(`${what}: ${host} is rate-limiting requests (429)`);
    throw unavailable(`${what}: ${host} answered HTTP ${res.status}`);
  }
}
