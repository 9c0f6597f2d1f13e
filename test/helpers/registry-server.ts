// A real registry (Debian's docker-registry) on 127.0.0.1 for tests, with
// optional TLS (own CA), token auth (own token server) or a basic-auth /
// request-counting proxy in front.
import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';

export interface TokenAuthOptions {
  /** user -> password accepted by the token server (basic auth on GET /token). */
  users: Record<string, string>;
  /** refresh token -> user, accepted on POST /token (identity_token flow). */
  refreshTokens?: Record<string, string>;
  /** Repositories anyone may pull without credentials. */
  anonymousPull?: (repo: string) => boolean;
}

export interface TestRegistry {
  /** http://127.0.0.1:PORT or https://... */
  url: string;
  /** 127.0.0.1:PORT, the registry part of image names. */
  host: string;
  storageDir: string;
  /** PEM of the CA that signed the registry's certificate (TLS variant). */
  caFile?: string;
  /** The token server's URL (token-auth variant). */
  tokenRealm?: string;
  /** Requests the token server answered, in order. */
  tokenRequests: { account?: string; scope?: string; status: number }[];
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function openssl(args: string[], cwd: string): Promise<unknown> {
  return execa('openssl', args, { cwd, timeout: 30_000 });
}

/** A CA, a server certificate for 127.0.0.1 signed by it, and a self-signed token-signing certificate. */
async function makeCertificates(dir: string): Promise<void> {
  const days = ['-days', '2'];
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', ...days, '-subj', '/CN=gvisor-cri test CA'], dir);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', ...days, '-extfile', 'san.ext'], dir);
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'token.key', '-out', 'token.crt', ...days, '-subj', '/CN=gvisor-cri test token issuer'], dir);
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** A token server for docker-registry's `auth.token`: RS256 JWTs whose x5c chains to rootcertbundle. */
async function startTokenServer(dir: string, opts: TokenAuthOptions, log: TestRegistry['tokenRequests']): Promise<{ realm: string; close(): Promise<void> }> {
  const key = createPrivateKey(await readFile(join(dir, 'token.key')));
  const certDer = Buffer.from((await readFile(join(dir, 'token.crt'), 'utf8')).replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const issue = (user: string | undefined, scope: string | undefined, service: string): string => {
    const access: { type: string; name: string; actions: string[] }[] = [];
    for (const s of (scope ?? '').split(' ').filter(Boolean)) {
      const parts = s.split(':');
      const type = parts[0];
      const actions = parts[parts.length - 1].split(',');
      const name = parts.slice(1, -1).join(':');
      const granted = user ? actions : opts.anonymousPull?.(name) ? actions.filter((a) => a === 'pull') : [];
      access.push({ type, name, actions: granted });
    }
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] }));
    const claims = b64url(JSON.stringify({ iss: 'gvisor-cri-test', sub: user ?? '', aud: service, exp: now + 600, nbf: now - 60, iat: now, jti: randomBytes(8).toString('hex'), access }));
    const signature = b64url(sign('sha256', Buffer.from(`${header}.${claims}`), key));
    return `${header}.${claims}.${signature}`;
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const reply = (status: number, doc: object, account?: string, scope?: string): void => {
        log.push({ account, scope, status });
        res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(doc));
      };
      if (req.method === 'POST') {
        const form = new URLSearchParams(body);
        const user = opts.refreshTokens?.[form.get('refresh_token') ?? ''];
        if (form.get('grant_type') !== 'refresh_token' || !user) return reply(401, { error: 'invalid refresh token' }, undefined, form.get('scope') ?? undefined);
        return reply(200, { access_token: issue(user, form.get('scope') ?? undefined, form.get('service') ?? '') }, user, form.get('scope') ?? undefined);
      }
      const scope = url.searchParams.get('scope') ?? undefined;
      const service = url.searchParams.get('service') ?? '';
      const authz = req.headers.authorization;
      let user: string | undefined;
      if (authz?.startsWith('Basic ')) {
        const [u, ...p] = Buffer.from(authz.slice(6), 'base64').toString().split(':');
        if (opts.users[u] === undefined || opts.users[u] !== p.join(':')) return reply(401, { error: 'bad credentials' }, u, scope);
        user = u;
      }
      reply(200, { token: issue(user, scope, service) }, user, scope);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { realm: `http://127.0.0.1:${port}/token`, close: () => new Promise((r) => server.close(() => r())) };
}

/** Starts docker-registry and waits until /v2/ answers; `stop` kills it and removes its storage. */
export async function startRegistry(opts: { tls?: boolean; tokenAuth?: TokenAuthOptions } = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-registry-'));
  const storageDir = join(dir, 'storage');
  const port = await freePort();
  const tokenRequests: TestRegistry['tokenRequests'] = [];
  let tokenServer: { realm: string; close(): Promise<void> } | undefined;
  if (opts.tls || opts.tokenAuth) await makeCertificates(dir);
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storageDir}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  if (opts.tls) lines.push('  tls:', `    certificate: ${join(dir, 'server.crt')}`, `    key: ${join(dir, 'server.key')}`);
  if (opts.tokenAuth) {
    tokenServer = await startTokenServer(dir, opts.tokenAuth, tokenRequests);
    lines.push('auth:', '  token:', `    realm: ${tokenServer.realm}`, '    service: gvisor-cri-test-registry', '    issuer: gvisor-cri-test', `    rootcertbundle: ${join(dir, 'token.crt')}`);
  }
  await writeFile(join(dir, 'config.yml'), lines.join('\n') + '\n');
  const proc: ResultPromise = execa('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], { reject: false, stdio: ['ignore', 'pipe', 'pipe'], buffer: true });
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const caFile = opts.tls ? join(dir, 'ca.crt') : undefined;
  const ca = caFile ? await readFile(caFile) : undefined;
  const stop = async (): Promise<void> => {
    proc.kill('SIGTERM');
    await proc;
    await tokenServer?.close();
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = (opts.tls ? https : http).get(`${url}/v2/`, { ca }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
    });
    if (status === 200 || status === 401) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      const result = await stop().then(() => proc);
      throw new Error(`docker-registry did not come up on ${url}: ${String(result.stderr)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, host: `127.0.0.1:${port}`, storageDir, caFile, tokenRealm: tokenServer?.realm, tokenRequests, stop };
}

export interface TestProxy {
  url: string;
  host: string;
  /** Every request that reached the proxy: method, path and the Authorization header it carried. */
  requests: { method: string; path: string; authorization: string | undefined }[];
  stop(): Promise<void>;
}

/**
 * A plain-HTTP proxy in front of a registry: counts requests, and with
 * `basicAuth` demands HTTP basic credentials (docker-registry's own htpasswd
 * needs bcrypt hashes, which nothing installed here makes).
 */
export async function startProxy(target: string, opts: { basicAuth?: Record<string, string> } = {}): Promise<TestProxy> {
  const requests: TestProxy['requests'] = [];
  const targetUrl = new URL(target);
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', authorization: req.headers.authorization });
    if (opts.basicAuth) {
      const authz = req.headers.authorization ?? '';
      const [u, ...p] = authz.startsWith('Basic ') ? Buffer.from(authz.slice(6), 'base64').toString().split(':') : [''];
      if (opts.basicAuth[u] === undefined || opts.basicAuth[u] !== p.join(':')) {
        req.resume();
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="gvisor-cri-test"', 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        return;
      }
    }
    const headers = { ...req.headers };
    delete headers.authorization;
    const upstream = http.request({ host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Path of a blob's data file inside docker-registry's storage (to corrupt it on purpose). */
export function registryBlobPath(registry: TestRegistry, digest: string): string {
  const hex = digest.replace(/^sha256:/, '');
  return join(registry.storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}

export const sha256Digest = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
