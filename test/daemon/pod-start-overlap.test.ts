// RunPodSandbox runs steps side by side (the netns, cgroup and /etc files;
// then CNI ADD while `runsc create` boots the sandbox). A failure of one
// step while the other is in flight must still leave nothing behind: no pod,
// no runsc state, no netns, no CNI cache entry, no cgroup, no pod files.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { startDaemon, type TestDaemon, removeAllPods, waitFor, testConflist } from '../helpers/daemon.js';
import { writeFakePlugin } from '../helpers/network-fake-plugin.js';
import { allRoots, readLayout } from '../../runtime/cgroups/index.js';

/** Long enough for `runsc create` to be seen while ADD still runs. */
const CNI_SLEEP_MS = 3000;
/** This daemon's own cgroup parent: the first pod's rollback must take it away too (the daemon made it). */
const DAEMON_PARENT = `gvcri-e2e-overlap-${process.pid}`;
let d: TestDaemon;
let pluginDir: string;
let cniLog: string;

before(async () => {
  pluginDir = await mkdtemp(join(tmpdir(), 'gvcri-failing-cni-'));
  cniLog = join(pluginDir, 'calls.log');
  await writeFakePlugin(pluginDir, 'failing');
  const conflist = testConflist('pod-start-overlap', [{ type: 'failing', sleepMs: CNI_SLEEP_MS, logFile: cniLog, fail: { code: 11, msg: 'no more addresses (test plugin)' } }]);
  d = await startDaemon({ conflist, args: ['--cni-bin-dir', `${pluginDir}:/usr/lib/cni:/opt/cni/bin`, '--cgroup-parent', DAEMON_PARENT] });
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  if (pluginDir) await rm(pluginDir, { recursive: true, force: true });
});

const podConfig = (name: string, hostname = name) => ({ metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 }, hostname });
const runscList = async (): Promise<{ id: string; status: string }[]> => {
  const out = (await execa('runsc', ['--root', join(d.runDir, 'runsc'), 'list', '--format=json'], { reject: false })).stdout.trim();
  return (JSON.parse(out || '[]') as { id: string; status: string }[] | null) ?? [];
};
const cniCalls = async (command: string): Promise<string[]> =>
  (await readFile(cniLog, 'utf8').catch(() => '')).split('\n').filter((l) => l.includes(`"command":"${command}"`)).map((l) => (JSON.parse(l) as { env: { CNI_CONTAINERID: string } }).env.CNI_CONTAINERID);

async function assertNothingLeft(): Promise<void> {
  assert.deepEqual((await d.call<{ items: unknown[] }>('runtime', 'ListPodSandbox', {})).items, []);
  assert.deepEqual(await readdir(join(d.stateDir, 'pods')).catch(() => []), [], 'pod records');
  assert.deepEqual(await readdir(join(d.runDir, 'pods')).catch(() => []), [], 'pod files and bundles');
  assert.deepEqual(await readdir(join(d.runDir, 'netns')).catch(() => []), [], 'netns files');
  assert.deepEqual((await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(d.runDir)), [], 'netns mounts');
  assert.deepEqual(await readdir(join(d.stateDir, 'cni', 'cache')).catch(() => []), [], 'CNI cache entries');
  assert.deepEqual(await runscList(), [], 'runsc state');
  const layout = await readLayout();
  if (layout) for (const root of allRoots(layout)) assert.equal(await stat(join(root, DAEMON_PARENT)).catch(() => undefined), undefined, `cgroup ${join(root, DAEMON_PARENT)}`);
}

test('CNI ADD failing while the sandbox boots beside it: the pod is rolled back whole', async () => {
  const call = d.call('runtime', 'RunPodSandbox', { config: podConfig('add-fails') }, 60_000);
  const outcome = call.then(() => 'made', (err: Error) => err.message);
  // runsc create does not wait for ADD: the sandbox exists (created, not started) while the plugin sleeps.
  const seen = await waitFor(async () => ((await runscList()).find((c) => c.status === 'created') ? true : undefined), CNI_SLEEP_MS, 'the sandbox created during CNI ADD');
  assert.ok(seen);
  assert.match(await outcome, /no more addresses \(test plugin\)/);
  const [podId] = await cniCalls('ADD');
  assert.ok(podId);
  assert.ok((await cniCalls('DEL')).includes(podId!), 'CNI DEL of the failed pod');
  await assertNothingLeft();
});

test('a pod file step failing while the netns is being made: the pod is rolled back whole', async () => {
  const adds = (await cniCalls('ADD')).length;
  // Not a DNS name: writing /etc/hosts fails beside the netns and cgroup steps.
  await assert.rejects(d.call('runtime', 'RunPodSandbox', { config: podConfig('bad-host', 'not_a_hostname!') }, 60_000), /not a valid DNS name/);
  assert.equal((await cniCalls('ADD')).length, adds, 'no CNI ADD after the failed step');
  await assertNothingLeft();
});
