import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { normalizeReference } from '../../image-store/index.js';
import { CriError } from '../../cri-api/errors.js';

const D = 'sha256:' + 'a'.repeat(64);

test('references normalize like docker and containerd', () => {
  const table: [string, string][] = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox', 'docker.io/library/busybox:latest'],
    ['bitnami/redis', 'docker.io/bitnami/redis:latest'],
    ['localhost/a', 'localhost/a:latest'],
    ['localhost:5000/a/b:tag', 'localhost:5000/a/b:tag'],
    ['127.0.0.1:5000/a/b', '127.0.0.1:5000/a/b:latest'],
    ['[::1]:5000/a', '[::1]:5000/a:latest'],
    ['registry.k8s.io/pause:3.9', 'registry.k8s.io/pause:3.9'],
    ['quay.io/a/b/c:v1.2_3-x', 'quay.io/a/b/c:v1.2_3-x'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`busybox:1.36@${D}`, `docker.io/library/busybox@${D}`],
    [`localhost:5000/a:t@${D}`, `localhost:5000/a@${D}`],
    ['my_repo/a__b/c-d.e', 'docker.io/my_repo/a__b/c-d.e:latest'],
  ];
  for (const [input, want] of table) assert.equal(normalizeReference(input), want, input);
});

test('malformed references are INVALID_ARGUMENT naming the reference', () => {
  const bad = ['', 'Busybox', 'busybox:', 'busybox@sha256:abc', 'a/../b', 'busy box', ':tag', 'a//b', '-a', 'a:' + 'x'.repeat(200), 'a'.repeat(64), `busybox@md5:${'a'.repeat(32)}`, 'host:port:5000/a', '/a'];
  for (const input of bad) {
    assert.throws(
      () => normalizeReference(input),
      (err: unknown) => err instanceof CriError && err.code === status.INVALID_ARGUMENT && err.message.includes(`"${input}"`),
      input,
    );
  }
});
