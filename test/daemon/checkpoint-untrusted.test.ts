// A checkpoint archive is a file anyone may have edited: over the real daemon's socket, an
// archive hand-edited to add a host mount of /etc, a capability or a runsc flag, and one whose
// runsc image bytes were altered, are each refused with INVALID_ARGUMENT naming what was wrong,
// and leave nothing behind: no container record, bundle, unpacked archive, runsc state or temp file.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { c as tarCreate, x as tarExtract } from 'tar';
import { startDaemon, testConflist, type TestDaemon, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';

let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let work: string;

before(async () => {
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/checkpoint-untrusted', { layers: [{ entries: busyboxEntries(BUSYBOX_APPLETS) }], config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] } })).ref;
  d = await startDaemon({ conflist: testConflist('checkpoint-untrusted') });
  await d.call('image', 'PullImage', { image: { image } });
  work = join(d.dir, 'archives');
  await mkdir(work, { recursive: true });
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
});

const podConfig = (name: string) => ({ metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name) });
const runPod = async (name: string): Promise<string> => (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig(name) })).pod_sandbox_id;
async function createContainer(pod: string, podName: string, name: string, img: string, extra: Record<string, unknown> = {}): Promise<string> {
  const config = { metadata: { name, attempt: 0 }, image: { image: img }, log_path: `${name}.log`, ...extra };
  return (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig(podName) })).container_id;
}

interface Manifest {
  spec: { mounts: { destination: string; type: string; source: string; options: string[] }[]; annotations: Record<string, string>; process: { capabilities: Record<string, string[]> } };
  [key: string]: unknown;
}

/** Everything a restore could leave: records, bundles, unpacked archives, runsc state, temp files. */
async function leftovers(): Promise<Record<string, string[]>> {
  const ls = async (p: string): Promise<string[]> => (await readdir(p).catch(() => [] as string[])).sort();
  return {
    records: await ls(join(d.stateDir, 'containers')),
    bundles: await ls(join(d.runDir, 'containers')),
    restore: await ls(join(d.stateDir, 'restore')),
    runsc: await ls(join(d.runDir, 'runsc')),
    archives: await ls(work),
  };
}

test('hand-edited and altered checkpoint archives are refused and leave nothing behind', async () => {
  const podA = await runPod('ckpt-src');
  const original = await createContainer(podA, 'ckpt-src', 'sleeper', image, { command: ['sleep', '3600'] });
  await d.call('runtime', 'StartContainer', { container_id: original });
  const location = join(work, 'original.tar');
  await d.call('runtime', 'CheckpointContainer', { container_id: original, location, timeout: 60 });
  const unpacked = join(d.dir, 'unpacked');
  await mkdir(unpacked);
  await tarExtract({ file: location, cwd: unpacked });
  const manifest = JSON.parse(await readFile(join(unpacked, 'manifest.json'), 'utf8')) as Manifest;
  assert.match(Object.values(manifest.imageDigests as Record<string, string>)[0]!, /^sha256:[0-9a-f]{64}$/);

  /** An archive with the manifest edited by `edit` (and the image by `image`), beside the real one. */
  const variant = async (name: string, edit: (m: Manifest) => void, alterImage = false): Promise<string> => {
    const src = join(d.dir, `variant-${name}`);
    await cp(unpacked, src, { recursive: true });
    const m = structuredClone(manifest);
    edit(m);
    await writeFile(join(src, 'manifest.json'), JSON.stringify(m));
    if (alterImage) {
      const img = join(src, 'checkpoint', 'checkpoint.img');
      const bytes = await readFile(img);
      bytes[bytes.length >> 1] ^= 0xff;
      await writeFile(img, bytes);
    }
    const file = join(d.dir, `${name}.tar`);
    await tarCreate({ file, cwd: src }, ['manifest.json', 'checkpoint']);
    return file;
  };
  const cases: [string, string, RegExp][] = [
    ['etc-mount', await variant('etc-mount', (m) => m.spec.mounts.push({ destination: '/host-etc', type: 'bind', source: '/etc', options: ['rbind', 'rw'] })), /mount \/host-etc of host path \/etc/],
    ['capability', await variant('capability', (m) => {
      for (const set of ['bounding', 'effective', 'permitted']) m.spec.process.capabilities[set]!.push('CAP_SYS_ADMIN');
    }), /capabilities CAP_SYS_ADMIN/],
    ['flag', await variant('flag', (m) => (m.spec.annotations['dev.gvisor.flag.host-uds'] = 'all')), /annotation dev\.gvisor\.flag\.host-uds/],
    ['image-bytes', await variant('image-bytes', () => undefined, true), /checkpoint\/checkpoint\.img does not match its digest/],
  ];

  const podB = await runPod('ckpt-dst');
  const before = await leftovers();
  for (const [name, archive, re] of cases) {
    await assert.rejects(createContainer(podB, 'ckpt-dst', `restored-${name}`, archive), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${name}: ${err.details}`);
      assert.match(err.details, re, name);
      return true;
    });
    const listed = await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', { filter: { pod_sandbox_id: podB } });
    assert.deepEqual(listed.containers, [], name);
    assert.deepEqual(await leftovers(), before, name);
  }

  // The archive as the daemon wrote it is still taken, in the same pod.
  const restored = await createContainer(podB, 'ckpt-dst', 'restored', location);
  const st = await d.call<{ status: { state: string } }>('runtime', 'ContainerStatus', { container_id: restored });
  assert.equal(st.status.state, 'CONTAINER_CREATED');
});
