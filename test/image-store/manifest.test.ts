import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { CriError } from '../../cri-api/errors.js';
import { chainIds, choosePlatform, parseManifest, MEDIA_TYPES } from '../../image-store/manifest.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const failed = (...words: string[]) => (err: unknown): boolean =>
  err instanceof CriError && err.code === status.FAILED_PRECONDITION && words.every((w) => err.message.includes(w));
const json = (o: object): Buffer => Buffer.from(JSON.stringify(o));

test('schema 1 and unknown media types are refused clearly', () => {
  assert.throws(() => parseManifest(json({ schemaVersion: 1, name: 'x', fsLayers: [] }), MEDIA_TYPES.dockerSchema1Signed, 'm'), failed('schema 1'));
  assert.throws(() => parseManifest(json({ schemaVersion: 2, mediaType: 'application/x-whatever' }), undefined, 'm'), failed('application/x-whatever'));
  const zstd = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: { mediaType: 'c', digest: d('a'), size: 1 }, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', digest: d('b'), size: 2 }] };
  assert.throws(() => parseManifest(json(zstd), undefined, 'm'), failed('zstd'));
  assert.throws(() => parseManifest(Buffer.from('{nope'), undefined, 'm'), failed('JSON'));
});

test('Docker and OCI manifests and indexes parse; the media type may come from the header only', () => {
  const manifest = { schemaVersion: 2, config: { mediaType: 'c', digest: d('a'), size: 1 }, layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: d('b'), size: 2 }] };
  assert.equal(parseManifest(json(manifest), MEDIA_TYPES.dockerManifest, 'm').kind, 'manifest');
  const index = { schemaVersion: 2, manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest: d('c'), size: 3, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } }, { mediaType: MEDIA_TYPES.ociManifest, digest: d('d'), size: 3, platform: { os: 'linux', architecture: 'amd64' } }] };
  const parsed = parseManifest(json(index), `${MEDIA_TYPES.dockerManifestList}; charset=utf-8`, 'm');
  assert.equal(parsed.kind, 'index');
  if (parsed.kind !== 'index') return;
  assert.equal(choosePlatform(parsed, { os: 'linux', architecture: 'amd64' }, 'x').digest, d('d'));
  assert.equal(choosePlatform(parsed, { os: 'linux', architecture: 'arm', variant: 'v7' }, 'x').digest, d('c'));
  assert.throws(() => choosePlatform(parsed, { os: 'linux', architecture: 'arm', variant: 'v6' }, 'x'), (e: unknown) => e instanceof CriError && e.code === status.NOT_FOUND && e.message.includes('linux/arm/v7'));
});

test('chain ids follow the OCI image spec', () => {
  const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
  const ids = chainIds([d('1'), d('2'), d('3')], sha);
  assert.equal(ids[0], d('1'));
  assert.equal(ids[1], `sha256:${sha(`${d('1')} ${d('2')}`)}`);
  assert.equal(ids[2], `sha256:${sha(`${ids[1]} ${d('3')}`)}`);
});
