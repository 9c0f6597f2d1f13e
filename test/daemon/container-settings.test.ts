// Kubernetes container settings over the real daemon's socket, as critest
// checks them: PID namespace sharing, masked and read-only paths, image
// volumes, non-recursive read-only volumes, and the settings refused with a
// clear status (Bidirectional propagation, run_as_group without a user).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type * as grpc from '@grpc/grpc-js';
import { startDaemon, testConflist, type TestDaemon, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';

const INDEX = 31;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let work: string;
let pod: string;

function podConfig(name: string) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'settings', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name) };
}

function create(name: string, extra: Record<string, unknown>): Promise<{ container_id: string }> {
  const config = { metadata: { name, attempt: 0 }, image: { image }, command: ['sleep', '3600'], ...extra };
  return d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('settings') });
}

async function run(name: string, extra: Record<string, unknown> = {}): Promise<string> {
  const { container_id } = await create(name, extra);
  await d.call('runtime', 'StartContainer', { container_id });
  return container_id;
}

const sh = (id: string, cmd: string) => d.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: id, cmd: ['sh', '-c', cmd], timeout: 20 });

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'gvcri-settings-'));
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/settings', {
    layers: [{ entries: [...busyboxEntries(BUSYBOX_APPLETS), { path: 'secret/', type: 'dir' as const }, { path: 'secret/key', content: 'k\n' }] }],
    config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
  })).ref;
  d = await startDaemon({ conflist: testConflist(INDEX) });
  await d.call('image', 'PullImage', { image: { image } });
  pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('settings') })).pod_sandbox_id;
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  if (work) await execa('umount', ['-l', join(work, 'vol', 'tmpfs')]).catch(() => undefined);
  if (work) await rm(work, { recursive: true, force: true });
});

test('PID namespace POD shares the sandbox\'s (pid 1 is the infra process); CONTAINER keeps its own', async () => {
  await run('sleeper', { command: ['sleep', '3601'] });
  const shared = await run('shared', { linux: { security_context: { namespace_options: { pid: 'POD' } } } });
  const own = await run('own', { linux: { security_context: { namespace_options: { pid: 'CONTAINER' } } } });
  assert.doesNotMatch((await sh(shared, 'cat /proc/1/cmdline')).stdout.toString(), /sleep/);
  assert.match((await sh(shared, 'ps')).stdout.toString(), /sleep 3601/);
  assert.match((await sh(own, 'cat /proc/1/cmdline')).stdout.toString(), /^sleep\x003600/);
});

test('masked and read-only paths; an image volume with a sub path and its digest; a read-only volume keeps a writable mount inside', async () => {
  const vol = join(work, 'vol');
  await mkdir(join(vol, 'tmpfs'), { recursive: true });
  await execa('mount', ['-t', 'tmpfs', 'none', join(vol, 'tmpfs')]);
  const id = await run('paths', {
    linux: { security_context: { masked_paths: ['/secret/key', '/proc/kcore'], readonly_paths: ['/tmp'] } },
    mounts: [
      { container_path: '/mnt/image', readonly: true, image: { image }, image_sub_path: 'secret' },
      { container_path: '/mnt/vol', host_path: vol, readonly: true },
    ],
  });
  assert.equal((await sh(id, 'cat /secret/key')).stdout.toString(), '');
  assert.match((await sh(id, '/secret/key')).stderr.toString(), /Permission denied/);
  assert.equal((await sh(id, 'touch /tmp/x')).stderr.toString(), 'touch: /tmp/x: Read-only file system\n');
  assert.equal((await sh(id, 'cat /mnt/image/key')).stdout.toString(), 'k\n');
  assert.notEqual((await sh(id, 'touch /mnt/image/x')).exit_code, 0);
  assert.notEqual((await sh(id, 'touch /mnt/vol/x')).exit_code, 0);
  assert.equal((await sh(id, 'touch /mnt/vol/tmpfs/x && echo ok')).stdout.toString(), 'ok\n');
  const st = (await d.call<{ status: { mounts: { container_path: string; host_path: string; image?: { image_ref: string } }[] } }>('runtime', 'ContainerStatus', { container_id: id })).status;
  const iv = st.mounts.find((m) => m.container_path === '/mnt/image')!;
  const pulled = (await d.call<{ image: { id: string } }>('image', 'ImageStatus', { image: { image } })).image;
  assert.equal(iv.image?.image_ref, pulled.id);
  assert.equal(iv.host_path, '');
});

test('refused with INVALID_ARGUMENT naming the field, leaving no container: Bidirectional propagation, run_as_group alone, a read-write image volume', async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ mounts: [{ container_path: '/b', host_path: work, propagation: 'PROPAGATION_BIDIRECTIONAL' }] }, /config\.mounts\[0\]\.propagation: Bidirectional cannot work in gVisor/],
    [{ linux: { security_context: { run_as_group: { value: 1 } } } }, /run_as_group is set without run_as_user/],
    [{ mounts: [{ container_path: '/i', readonly: false, image: { image } }] }, /image volume is always read-only/],
  ];
  const before = (await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', {})).containers.length;
  for (const [extra, message] of cases) {
    await assert.rejects(create('refused', extra), (err: grpc.ServiceError) => {
      assert.equal(err.code, 3);
      assert.match(err.details, message);
      return true;
    });
  }
  assert.equal((await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', {})).containers.length, before);
});
