// Credentials go only to the origin (scheme, host, port) they were meant for:
// redirects do not carry them elsewhere, a token POST's body is never
// re-sent to another origin, and a plain-HTTP token realm is refused unless
// it is on loopback or configured insecure. Every server here is on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { execa } from 'execa';
import { CriError } from '../../cri-api/errors.js';
import { silentLogger } from '../../cri-api/logger.js';
import type { RegistryConfig } from '../../daemon/config.js';
import { ImageStore } from '../../image-store/index.js';
import { httpRequest } from '../../image-store/registry-http.js';
import { pushTestImage, type PushedImage } from '../helpers/image-builder.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';

const USER = 'alice';
const PASSWORD = 's3cret-Pa55';
const REFRESH = 'refresh-token-of-alice';
const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
}

interface TestServer {
  port: number;
  origin: string;
  seen: Seen[];
  close(): Promise<void>;
}

type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;

/** A loopback HTTP server that records every request (with its Authorization and body) before `handle` answers it. */
async function startServer(handle: Handler): Promise<TestServer> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body });
      handle(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  servers.push(server);
  return { port, origin: `http://127.0.0.1:${port}`, seen, close: () => new Promise((r) => server.close(() => r())) };
}

const servers: (http.Server | Server)[] = [];
const dirs: string[] = [];
let registry: TestRegistry;
let image: PushedImage;

before(async () => {
  registry = await startRegistry();
  image = await pushTestImage(registry.url, 'redirect/app', { layers: [{ entries: [{ path: 'f', content: 'x' }] }] });
});

after(async () => {
  for (const s of servers) {
    if (s instanceof http.Server) s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  await registry?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function openStore(registries: Record<string, RegistryConfig> = {}): Promise<ImageStore> {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-images-redirect-'));
  dirs.push(dir);
  return ImageStore.open({ stateDir: dir, registries, maxConcurrentDownloads: 2, pullProgressTimeoutMs: 10_000, logger: silentLogger });
}

const isCode = (code: status, ...words: string[]) => (err: unknown): boolean => {
  assert.ok(err instanceof CriError, String(err));
  assert.equal(err.code, code, err.message);
  for (const w of words) assert.ok(err.message.includes(w), `"${err.message}" lacks "${w}"`);
  for (const secret of [PASSWORD, REFRESH]) assert.ok(!err.message.includes(secret), 'secret in error');
  return true;
};

/** Proxies a request to the test registry, without its Authorization. */
function proxyToRegistry(req: http.IncomingMessage, body: string, res: http.ServerResponse): void {
  const target = new URL(registry.url);
  const headers = { ...req.headers };
  delete headers.authorization;
  const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.pipe(res);
  });
  up.on('error', () => res.writeHead(502).end());
  up.end(body);
}

/** A registry front that asks for a bearer token from `realm` and otherwise answers 404. */
function bearerFront(realm: () => string): Handler {
  return (req, _body, res) => {
    if (req.url?.startsWith('/v2/')) {
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm()}",service="front"` }).end();
      return;
    }
    res.writeHead(404).end();
  };
}

test('a token POST redirected to another origin is not re-sent there (307), nor its refresh token (303)', async () => {
  const elsewhere = await startServer((_req, _body, res) => res.writeHead(401).end());
  for (const code of [307, 308, 303]) {
    elsewhere.seen.length = 0;
    let front!: TestServer;
    front = await startServer((req, body, res) => {
      if (req.url === '/token') {
        res.writeHead(code, { Location: `${elsewhere.origin}/token` }).end();
        return;
      }
      bearerFront(() => `${front.origin}/token`)(req, body, res);
    });
    const store = await openStore();
    const ref = `127.0.0.1:${front.port}/redirect/app:latest`;
    if (code === 303) {
      // A 303 asks for a GET: the form stays behind, and with it the refresh token.
      await assert.rejects(store.pull(ref, { identityToken: REFRESH }), isCode(status.UNAUTHENTICATED));
      assert.equal(elsewhere.seen.length, 1);
      assert.equal(elsewhere.seen[0]!.method, 'GET');
    } else {
      await assert.rejects(store.pull(ref, { identityToken: REFRESH }), isCode(status.FAILED_PRECONDITION, 'redirected', `127.0.0.1:${elsewhere.port}`, 'not sent'));
      assert.deepEqual(elsewhere.seen, [], `${code}: the other origin was contacted`);
    }
    for (const s of elsewhere.seen) assert.ok(!s.body.includes(REFRESH) && !s.url.includes(REFRESH) && s.authorization === undefined);
    assert.ok(front.seen.some((s) => s.method === 'POST' && s.body.includes(REFRESH)), 'the token server itself got the refresh token');
  }
});

test('Basic credentials for a token realm do not follow its redirect to another origin', async () => {
  const elsewhere = await startServer((_req, _body, res) => res.writeHead(401).end());
  let front!: TestServer;
  front = await startServer((req, body, res) => {
    if (req.url?.startsWith('/token')) {
      res.writeHead(302, { Location: `${elsewhere.origin}/token` }).end();
      return;
    }
    bearerFront(() => `${front.origin}/token`)(req, body, res);
  });
  const store = await openStore();
  await assert.rejects(store.pull(`127.0.0.1:${front.port}/redirect/app:latest`, { username: USER, password: PASSWORD }), isCode(status.UNAUTHENTICATED));
  assert.ok(front.seen.some((s) => s.url.startsWith('/token') && s.authorization === basic), 'the realm itself got the credentials');
  assert.equal(elsewhere.seen.length, 1, 'the redirect was followed');
  assert.equal(elsewhere.seen[0]!.authorization, undefined);
});

test('a registry redirecting blobs to a storage origin: storage never sees the registry\'s Authorization', async () => {
  const storage = await startServer(proxyToRegistry);
  const front = await startServer((req, body, res) => {
    if (req.headers.authorization !== basic) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="front"' }).end();
      return;
    }
    if (req.url?.includes('/blobs/')) {
      res.writeHead(307, { Location: `${storage.origin}${req.url}` }).end();
      return;
    }
    proxyToRegistry(req, body, res);
  });
  const store = await openStore();
  const pulled = await store.pull(`127.0.0.1:${front.port}/redirect/app:latest`, { username: USER, password: PASSWORD });
  assert.equal(pulled.id, image.configDigest);
  assert.equal(storage.seen.length, 2, 'config and layer came from storage');
  assert.deepEqual(storage.seen.map((s) => s.authorization), [undefined, undefined]);
});

test('a plain-HTTP token realm is refused unless loopback or configured insecure', async () => {
  const realm = await startServer((_req, _body, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"token":"t"}'));
  // 0.0.0.0 reaches this host but is not a loopback address: it stands for a remote token server.
  const front = await startServer(bearerFront(() => `http://0.0.0.0:${realm.port}/token`));
  const ref = `127.0.0.1:${front.port}/redirect/app:latest`;
  for (const auth of [undefined, { username: USER, password: PASSWORD }, { identityToken: REFRESH }]) {
    await assert.rejects((await openStore()).pull(ref, auth), isCode(status.FAILED_PRECONDITION, 'http://0.0.0.0', 'plain HTTP', 'insecure'));
  }
  assert.deepEqual(realm.seen, [], 'the realm was never contacted');
  // Configured insecure, the realm is used (and answers a token the front then does not accept).
  await assert.rejects((await openStore({ [`0.0.0.0:${realm.port}`]: { mirrors: [], insecure: true } })).pull(ref), isCode(status.UNAUTHENTICATED));
  assert.equal(realm.seen.length, 1);
});

/** One port that speaks TLS and plain HTTP (first byte 0x16 is a TLS handshake): the same host and port, two origins. */
async function startDualServer(handle: (secure: boolean, req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ port: number; caFile: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-dual-'));
  dirs.push(dir);
  await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: dir, timeout: 30_000 });
  const tlsServer = https.createServer({ key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) }, (req, res) => handle(true, req, res));
  const plainServer = http.createServer((req, res) => handle(false, req, res));
  servers.push(tlsServer, plainServer);
  const front = createServer({ pauseOnConnect: true }, (socket: Socket) => {
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (!first) return socket.destroy();
      socket.unshift(first);
      (first[0] === 0x16 ? tlsServer : plainServer).emit('connection', socket);
    });
  });
  servers.push(front);
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  return { port: (front.address() as AddressInfo).port, caFile: join(dir, 'cert.pem') };
}

test('Authorization survives a same-origin redirect but not https to http on the same host and port', async () => {
  const seen: { secure: boolean; path: string; authorization: string | undefined }[] = [];
  const dual = await startDualServer((secure, req, res) => {
    seen.push({ secure, path: req.url ?? '', authorization: req.headers.authorization });
    if (req.url === '/same') res.writeHead(302, { Location: '/final' }).end();
    else if (req.url === '/downgrade') res.writeHead(302, { Location: `http://127.0.0.1:${dual.port}/final` }).end();
    else res.writeHead(200).end('ok');
  });
  const opts = { headers: { Authorization: 'Bearer registry-token' }, caFile: dual.caFile, idleTimeoutMs: 10_000, what: 'test' };
  for (const path of ['/same', '/downgrade']) {
    const res = await httpRequest(new URL(`https://127.0.0.1:${dual.port}${path}`), opts);
    res.body.resume();
    assert.equal(res.status, 200);
  }
  assert.deepEqual(seen, [
    { secure: true, path: '/same', authorization: 'Bearer registry-token' },
    { secure: true, path: '/final', authorization: 'Bearer registry-token' },
    { secure: true, path: '/downgrade', authorization: 'Bearer registry-token' },
    { secure: false, path: '/final', authorization: undefined },
  ]);
});
