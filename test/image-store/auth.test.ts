import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { CriError } from '../../cri-api/errors.js';
import type { RegistryConfig } from '../../daemon/config.js';
import { ImageStore, type AuthCredentials } from '../../image-store/index.js';
import { pushTestImage, type PushedImage } from '../helpers/image-builder.js';
import { startProxy, startRegistry, type TestProxy, type TestRegistry } from '../helpers/registry-server.js';

const USER = 'alice';
const PASSWORD = 's3cret-Pa55';
const REFRESH = 'refresh-token-of-alice';

let tokenRegistry: TestRegistry;
let plainRegistry: TestRegistry;
let basicProxy: TestProxy;
let publicImage: PushedImage;
let privateImage: PushedImage;
let basicImage: PushedImage;
const dirs: string[] = [];

before(async () => {
  [tokenRegistry, plainRegistry] = await Promise.all([
    startRegistry({ tls: true, tokenAuth: { users: { [USER]: PASSWORD }, refreshTokens: { [REFRESH]: USER }, anonymousPull: (repo) => repo.startsWith('public/') } }),
    startRegistry(),
  ]);
  const pushAuth = { auth: { username: USER, password: PASSWORD }, caFile: tokenRegistry.caFile };
  publicImage = await pushTestImage(tokenRegistry.url, 'public/hello', { layers: [{ entries: [{ path: 'hello', content: 'public' }] }], ...pushAuth });
  privateImage = await pushTestImage(tokenRegistry.url, 'private/secret', { layers: [{ entries: [{ path: 'hello', content: 'private' }] }], ...pushAuth });
  basicProxy = await startProxy(plainRegistry.url, { basicAuth: { [USER]: PASSWORD } });
  basicImage = await pushTestImage(basicProxy.url, 'basic/img', { layers: [{ entries: [{ path: 'hello', content: 'basic' }] }], auth: { username: USER, password: PASSWORD } });
});

after(async () => {
  await basicProxy?.stop();
  await tokenRegistry?.stop();
  await plainRegistry?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A store whose log lines are captured, to check no secret ever reaches them. */
async function openStore(registries: Record<string, RegistryConfig>): Promise<{ store: ImageStore; logs: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-images-auth-'));
  dirs.push(dir);
  const logs: string[] = [];
  const logger = pino({ level: 'trace' }, new Writable({ write: (c: Buffer, _e, cb) => (logs.push(c.toString()), cb()) }));
  const store = await ImageStore.open({ stateDir: dir, registries, maxConcurrentDownloads: 2, pullProgressTimeoutMs: 10_000, logger });
  return { store, logs };
}

const tls = (): Record<string, RegistryConfig> => ({ [tokenRegistry.host]: { mirrors: [], insecure: false, ca_file: tokenRegistry.caFile } });

function rejectsWith(code: status, ...words: string[]) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof CriError, String(err));
    assert.equal(err.code, code, err.message);
    for (const w of words) assert.ok(err.message.includes(w), `"${err.message}" lacks "${w}"`);
    for (const secret of [PASSWORD, REFRESH, Buffer.from(`${USER}:${PASSWORD}`).toString('base64')]) assert.ok(!err.message.includes(secret), 'secret in error');
    return true;
  };
}

function assertNoSecrets(logs: string[]): void {
  const all = logs.join('');
  for (const secret of [PASSWORD, REFRESH, Buffer.from(`${USER}:${PASSWORD}`).toString('base64')]) assert.ok(!all.includes(secret), 'secret in logs');
}

test('anonymous bearer token flow over TLS with the configured CA', async () => {
  const { store, logs } = await openStore(tls());
  tokenRegistry.tokenRequests.length = 0;
  const image = await store.pull(publicImage.ref);
  assert.equal(image.id, publicImage.configDigest);
  assert.ok(tokenRegistry.tokenRequests.length >= 1);
  assert.ok(tokenRegistry.tokenRequests.every((r) => r.account === undefined && r.scope === 'repository:public/hello:pull'));
  assertNoSecrets(logs);
});

test('TLS registry without its CA is UNAVAILABLE with a certificate hint', async () => {
  const { store } = await openStore({});
  await assert.rejects(store.pull(publicImage.ref), rejectsWith(status.UNAVAILABLE, 'certificate', 'ca_file'));
});

test('private repository: anonymous is UNAUTHENTICATED, credentials in every AuthConfig form work', async () => {
  const { store, logs } = await openStore(tls());
  await assert.rejects(store.pull(privateImage.ref), rejectsWith(status.UNAUTHENTICATED, 'private/secret', 'credentials'));
  const forms: AuthCredentials[] = [
    { username: USER, password: PASSWORD },
    { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') },
    { identityToken: REFRESH },
  ];
  for (const auth of forms) {
    const fresh = (await openStore(tls())).store;
    assert.equal((await fresh.pull(privateImage.ref, auth)).id, privateImage.configDigest, JSON.stringify(Object.keys(auth)));
  }
  // registry_token: a bearer token obtained elsewhere is sent as it is.
  const res = await fetch(`${tokenRegistry.tokenRealm}?service=gvisor-cri-test-registry&scope=repository:private/secret:pull`, {
    headers: { Authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` },
  });
  const { token } = (await res.json()) as { token: string };
  const withToken = (await openStore(tls())).store;
  const before = tokenRegistry.tokenRequests.length;
  assert.equal((await withToken.pull(privateImage.ref, { registryToken: token })).id, privateImage.configDigest);
  assert.equal(tokenRegistry.tokenRequests.length, before, 'registry_token skips the token server');
  assertNoSecrets(logs);
});

test('bad credentials are UNAUTHENTICATED and never echoed', async () => {
  const { store, logs } = await openStore(tls());
  await assert.rejects(store.pull(privateImage.ref, { username: USER, password: 'wrong' }), rejectsWith(status.UNAUTHENTICATED, 'credentials rejected'));
  await assert.rejects(store.pull(privateImage.ref, { identityToken: 'bogus' }), rejectsWith(status.UNAUTHENTICATED));
  await assert.rejects(store.pull(privateImage.ref, { registryToken: 'not-a-jwt' }), rejectsWith(status.UNAUTHENTICATED, 'registry token'));
  await assert.rejects(store.pull(privateImage.ref, { auth: Buffer.from(`${USER}:nope`).toString('base64') }), rejectsWith(status.UNAUTHENTICATED));
  assertNoSecrets(logs);
});

test('basic auth registry', async () => {
  const { store, logs } = await openStore({});
  await assert.rejects(store.pull(basicImage.ref), rejectsWith(status.UNAUTHENTICATED, 'requires credentials'));
  await assert.rejects(store.pull(basicImage.ref, { username: USER, password: 'bad' }), rejectsWith(status.UNAUTHENTICATED, 'basic/img'));
  assert.equal((await store.pull(basicImage.ref, { username: USER, password: PASSWORD })).id, basicImage.configDigest);
  assertNoSecrets(logs);
});
