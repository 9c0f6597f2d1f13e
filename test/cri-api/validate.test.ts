import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { CriError, GrpcStatus, wrapError } from '../../cri-api/errors.js';
import { requireAbsolutePath, requireId, requireMessage, requireName, requireNonNegative, requireString, requireStringMap } from '../../cri-api/validate.js';

const invalid = (fn: () => unknown, field: string): void => {
  assert.throws(fn, (err: unknown) => err instanceof CriError && err.code === status.INVALID_ARGUMENT && err.message.includes(field));
};

test('validation helpers answer INVALID_ARGUMENT naming the field', () => {
  invalid(() => requireString('', 'config.metadata.name'), 'config.metadata.name');
  invalid(() => requireString(undefined, 'image.image'), 'image.image');
  invalid(() => requireMessage(null, 'config'), 'config');
  invalid(() => requireId('../etc', 'container_id'), 'container_id');
  invalid(() => requireId('a'.repeat(129), 'pod_sandbox_id'), 'pod_sandbox_id');
  invalid(() => requireName('-bad-', 'config.metadata.name'), 'config.metadata.name');
  invalid(() => requireNonNegative(-1, 'timeout'), 'timeout');
  invalid(() => requireAbsolutePath('rel/path', 'mounts[0].container_path'), 'mounts[0].container_path');
  invalid(() => requireAbsolutePath('/a/../b', 'log_directory'), 'log_directory');
  invalid(() => requireStringMap({ '': 'x' }, 'labels'), 'labels');
  assert.equal(requireId('abc123', 'id'), 'abc123');
  assert.equal(requireName('my-pod.1', 'name'), 'my-pod.1');
  assert.equal(requireNonNegative('30', 'timeout'), 30);
});

test('our gRPC status table is the one grpc-js (and the gRPC spec) has, name for name', () => {
  const theirs = Object.fromEntries(Object.entries(status).filter(([name]) => !/^\d+$/.test(name)));
  assert.deepEqual({ ...GrpcStatus }, theirs);
});

test('wrapError keeps the status and prefixes the step', () => {
  const e = wrapError(new CriError(status.NOT_FOUND, 'image "x" not found'), 'create container c1');
  assert.equal(e.code, status.NOT_FOUND);
  assert.equal(e.message, 'create container c1: image "x" not found');
  const plain = wrapError(new Error('boom'), 'CNI ADD');
  assert.equal(plain.code, status.INTERNAL);
  assert.equal(plain.message, 'CNI ADD: boom');
});

test('log paths and sysctl names are checked before any use', async () => {
  const { optionalRelativePath, requireSysctls, requireAbsolutePath: abs } = await import('../../cri-api/validate.js');
  invalid(() => abs('/a\0b', 'config.log_directory'), 'config.log_directory');
  invalid(() => optionalRelativePath('../x.log', 'config.log_path'), 'config.log_path');
  invalid(() => optionalRelativePath('a/../../x.log', 'config.log_path'), 'config.log_path');
  invalid(() => optionalRelativePath('/x.log', 'config.log_path'), 'config.log_path');
  invalid(() => optionalRelativePath('x\0.log', 'config.log_path'), 'config.log_path');
  assert.equal(optionalRelativePath('', 'config.log_path'), undefined);
  assert.equal(optionalRelativePath('c/0.log', 'config.log_path'), 'c/0.log');
  for (const bad of ['a b', 'net.ipv4.$(x)', 'kernel..x', '.kernel', 'Kernel.x', 'x;y', 'a'.repeat(254), '']) invalid(() => requireSysctls({ [bad]: '1' }, 'config.linux.sysctls'), 'config.linux.sysctls');
  invalid(() => requireSysctls({ 'net.ipv4.ip_forward': '1\n' }, 'config.linux.sysctls'), 'config.linux.sysctls');
  assert.deepEqual(requireSysctls({ 'net.ipv4.ip_forward': '1', 'net/ipv4/conf/all/rp_filter': '0', 'kernel.shm_rmid_forced': '1' }, 's'), { 'net.ipv4.ip_forward': '1', 'net/ipv4/conf/all/rp_filter': '0', 'kernel.shm_rmid_forced': '1' });
});
