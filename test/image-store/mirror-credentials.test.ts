// A pull's credentials belong to the image's own registry: a mirror gets only
// the credentials configured for that mirror's host, never the pull's own.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../cri-api/logger.js';
import type { RegistryConfig } from '../../daemon/config.js';
import { ImageStore, type AuthCredentials } from '../../image-store/index.js';
import { pushTestImage, type PushedImage } from '../helpers/image-builder.js';
import { startProxy, startRegistry, type TestProxy, type TestRegistry } from '../helpers/registry-server.js';

const USER = 'alice';
const PASSWORD = 'upstream-Pa55';
const REFRESH = 'refresh-token-of-alice';
const MIRROR_USER = 'mirror-bot';
const MIRROR_PASSWORD = 'mirror-Pa55';
const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

let upstream: TestRegistry;
let mirrorBackend: TestRegistry;
/** A loopback mirror in front of a plain registry; it records the Authorization header of every request. */
let mirror: TestProxy;
let upstreamImage: PushedImage;
let mirrorImage: PushedImage;
const dirs: string[] = [];

before(async () => {
  [upstream, mirrorBackend] = await Promise.all([
    startRegistry({ tls: true, tokenAuth: { users: { [USER]: PASSWORD }, refreshTokens: { [REFRESH]: USER } } }),
    startRegistry(),
  ]);
  upstreamImage = await pushTestImage(upstream.url, 'private/app', { layers: [{ entries: [{ path: 'from', content: 'upstream' }] }], auth: { username: USER, password: PASSWORD }, caFile: upstream.caFile });
  // The mirror's copy differs, so which endpoint served a pull shows in the image id.
  mirrorImage = await pushTestImage(mirrorBackend.url, 'private/app', { layers: [{ entries: [{ path: 'from', content: 'mirror' }] }] });
  mirror = await startProxy(mirrorBackend.url, { basicAuth: { [MIRROR_USER]: MIRROR_PASSWORD } });
});

after(async () => {
  await mirror?.stop();
  await upstream?.stop();
  await mirrorBackend?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function openStore(registries: Record<string, RegistryConfig>): Promise<ImageStore> {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-images-mirror-auth-'));
  dirs.push(dir);
  return ImageStore.open({ stateDir: dir, registries, maxConcurrentDownloads: 2, pullProgressTimeoutMs: 10_000, logger: silentLogger });
}

/** An upstream registry token obtained the way kubelet's credential providers hand one over. */
async function upstreamToken(): Promise<string> {
  const res = await fetch(`${upstream.tokenRealm}?service=gvisor-cri-test-registry&scope=repository:private/app:pull`, { headers: { Authorization: basic(USER, PASSWORD) } });
  return ((await res.json()) as { token: string }).token;
}

const upstreamSecrets = (token: string): string[] => [PASSWORD, REFRESH, token, Buffer.from(`${USER}:${PASSWORD}`).toString('base64')];

test('a mirror with no configured credentials sees none of the pull\'s: every AuthConfig form goes to the registry only', async () => {
  const token = await upstreamToken();
  const forms: AuthCredentials[] = [
    { username: USER, password: PASSWORD },
    { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') },
    { identityToken: REFRESH },
    { registryToken: token },
  ];
  for (const auth of forms) {
    mirror.requests.length = 0;
    const store = await openStore({ [upstream.host]: { mirrors: [mirror.url], insecure: false, ca_file: upstream.caFile } });
    const image = await store.pull(upstreamImage.ref, auth);
    assert.equal(image.id, upstreamImage.configDigest, `${Object.keys(auth).join()}: the registry served the pull, the mirror refused`);
    const authorizations = mirror.requests.map((r) => r.authorization);
    assert.ok(authorizations.length > 0, 'the mirror was asked first');
    assert.deepEqual(authorizations, authorizations.map(() => undefined), `${Object.keys(auth).join()}: the mirror was sent an Authorization header`);
  }
});

test('a mirror with configured credentials gets exactly those, and the registry\'s stay home', async () => {
  const token = await upstreamToken();
  for (const auth of [{ username: USER, password: PASSWORD }, { registryToken: token }, { identityToken: REFRESH }] as AuthCredentials[]) {
    mirror.requests.length = 0;
    const tokenRequests = upstream.tokenRequests.length;
    const store = await openStore({
      [upstream.host]: { mirrors: [mirror.url], insecure: false, ca_file: upstream.caFile },
      [mirror.host]: { mirrors: [], insecure: false, username: MIRROR_USER, password: MIRROR_PASSWORD },
    });
    const image = await store.pull(upstreamImage.ref, auth);
    assert.equal(image.id, mirrorImage.configDigest, 'the mirror served the pull');
    const authorizations = mirror.requests.map((r) => r.authorization);
    const sent = authorizations.filter((a): a is string => a !== undefined);
    assert.ok(sent.length > 0);
    assert.deepEqual(new Set(sent), new Set([basic(MIRROR_USER, MIRROR_PASSWORD)]));
    for (const secret of upstreamSecrets(token)) assert.ok(!authorizations.some((a) => a?.includes(secret)), 'an upstream secret reached the mirror');
    assert.equal(upstream.tokenRequests.length, tokenRequests, 'the registry was not contacted');
  }
});

test('credentials configured for the registry itself stand in when the pull brings none', async () => {
  const store = await openStore({ [upstream.host]: { mirrors: [], insecure: false, ca_file: upstream.caFile, username: USER, password: PASSWORD } });
  assert.equal((await store.pull(upstreamImage.ref)).id, upstreamImage.configDigest);
  const viaAuth = await openStore({ [upstream.host]: { mirrors: [], insecure: false, ca_file: upstream.caFile, auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } });
  assert.equal((await viaAuth.pull(upstreamImage.ref)).id, upstreamImage.configDigest);
});

test('a plain-HTTP mirror that is neither loopback nor insecure gets no credentials, even configured ones', async () => {
  // 0.0.0.0 reaches this host (the mirror listens on 127.0.0.1) but is not a loopback address.
  const port = new URL(mirror.url).port;
  const plainMirror = `http://0.0.0.0:${port}`;
  mirror.requests.length = 0;
  const store = await openStore({
    [upstream.host]: { mirrors: [plainMirror], insecure: false, ca_file: upstream.caFile },
    [`0.0.0.0:${port}`]: { mirrors: [], insecure: false, username: MIRROR_USER, password: MIRROR_PASSWORD },
  });
  const image = await store.pull(upstreamImage.ref, { username: USER, password: PASSWORD });
  assert.equal(image.id, upstreamImage.configDigest, 'the mirror was skipped');
  const authorizations = mirror.requests.map((r) => r.authorization);
  assert.ok(authorizations.length > 0);
  assert.deepEqual(authorizations, authorizations.map(() => undefined));
});
