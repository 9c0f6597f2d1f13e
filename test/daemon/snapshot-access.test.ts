// CVE-2021-41091's class: an image's setuid binary must not be reachable by another local
// user through the snapshot tree. With the daemon's real state dir, an unprivileged user
// (nobody, via setpriv) can neither stat nor run the setuid file of a pulled image.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { pushTestImage } from '../helpers/image-builder.js';

const run = promisify(execFile);
let registry: TestRegistry;
let d: TestDaemon;

before(async () => {
  registry = await startRegistry();
  d = await startDaemon({});
});

after(async () => {
  await d?.cleanup();
  await registry?.stop();
});

/** Runs `args` as nobody:nogroup with no supplementary groups; its exit code and stderr. */
async function asNobody(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...args]);
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stderr: e.stderr ?? '' };
  }
}

test('another local user cannot reach a setuid binary of an image through the snapshot tree', async () => {
  const image = await pushTestImage(registry.url, 'e2e/setuid', {
    layers: [{ entries: [{ path: 'bin/', type: 'dir' }, { path: 'bin/suid-busybox', content: readFileSync('/bin/busybox'), mode: 0o4755 }] }],
    config: { Cmd: ['/bin/suid-busybox', 'true'] },
  });
  await d.call('image', 'PullImage', { image: { image: image.ref } });
  const snapshots = join(d.stateDir, 'images', 'snapshots');
  let target: string | undefined;
  for (const name of await readdir(snapshots)) {
    const candidate = join(snapshots, name, 'bin', 'suid-busybox');
    if ((await stat(candidate).catch(() => undefined))?.isFile()) target = candidate;
  }
  assert.ok(target, 'the setuid file is in a snapshot');
  assert.equal((await stat(target)).mode & 0o4000, 0o4000, 'it is setuid on disk');

  const statted = await asNobody(['stat', target]);
  assert.notEqual(statted.code, 0, 'nobody can stat it');
  assert.match(statted.stderr, /Permission denied/);
  const ran = await asNobody([target, 'id', '-u']);
  assert.notEqual(ran.code, 0, 'nobody cannot run it');
  assert.notEqual((await asNobody(['ls', snapshots])).code, 0, 'nobody cannot list the snapshots');
  // The control: nobody can run things at all, so the refusals above are about the path.
  assert.equal((await asNobody(['/bin/true'])).code, 0);
});
