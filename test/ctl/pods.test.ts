// gvisor-cri ctl on real pods and containers (runsc sandboxes behind a live
// daemon): listing, inspecting by ID prefix or name, exec.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeCtlPodWorld } from '../helpers/ctl-pods.js';
import { ctl } from '../helpers/ctl-run.js';

const w = await makeCtlPodWorld(13);
after(() => w.cleanup());
const { d, image, runPod, runContainer, waitExited } = w;
const run = (...args: string[]) => ctl(d.socket, args);

test('pods, ps, inspect and inspectp: tables, JSON, prefixes and names', async () => {
  const pod = await runPod('ctl-web');
  const sleeper = await runContainer(pod, 'ctl-web', 'sleeper', ['sleep', '3600']);
  const quick = await runContainer(pod, 'ctl-web', 'quick', ['true']);
  await waitExited(quick);

  const pods = await run('pods');
  assert.equal(pods.code, 0, pods.stderr);
  const [header, row] = pods.stdout.trimEnd().split('\n');
  assert.match(header!, /^POD ID\s+CREATED\s+STATE\s+NAME\s+NAMESPACE\s+ATTEMPT\s+RUNTIME$/);
  assert.deepEqual(row!.split(/\s{3,}/), [pod.slice(0, 13), row!.split(/\s{3,}/)[1], 'Ready', 'ctl-web', 'ctl-ns', '1', '(default)']);
  assert.match(row!.split(/\s{3,}/)[1]!, /(second|minute)s? ago$/);
  assert.deepEqual(JSON.parse((await run('pods', '-o', 'json')).stdout).items.map((p: { id: string }) => p.id), [pod]);

  const ps = await run('ps');
  assert.equal(ps.code, 0, ps.stderr);
  const lines = ps.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^CONTAINER\s+IMAGE\s+CREATED\s+STATE\s+NAME\s+ATTEMPT\s+POD ID$/);
  assert.equal(lines.length, 2, 'without -a only running containers');
  const cells = lines[1]!.split(/\s{3,}/);
  assert.equal(cells[0], sleeper.slice(0, 13));
  assert.equal(cells[1], image);
  assert.deepEqual(cells.slice(3), ['Running', 'sleeper', '0', pod.slice(0, 13)]);
  const all = await run('ps', '-a', '-q');
  assert.deepEqual(all.stdout.trim().split('\n').sort(), [sleeper, quick].sort());
  assert.match((await run('ps', '-a')).stdout, /\sExited\s+quick\s/);

  const insp = await run('inspect', sleeper.slice(0, 6));
  assert.equal(insp.code, 0, insp.stderr);
  const st = JSON.parse(insp.stdout) as { status: { id: string; state: string; log_path: string }; info: Record<string, unknown> };
  assert.equal(st.status.id, sleeper);
  assert.equal(st.status.state, 'CONTAINER_RUNNING');
  assert.equal(st.status.log_path, join(d.logDir, 'ctl-web', 'sleeper.log'));
  const byName = JSON.parse((await run('inspect', 'quick')).stdout) as { status: { id: string; exit_code: number } };
  assert.equal(byName.status.id, quick);
  assert.equal(byName.status.exit_code, 0);
  const podSt = JSON.parse((await run('inspectp', pod.slice(0, 5))).stdout) as { status: { id: string; state: string; network: { ip: string } } };
  assert.equal(podSt.status.id, pod);
  assert.equal(podSt.status.state, 'SANDBOX_READY');
  assert.match(podSt.status.network.ip, /^10\./);
});

test('exec: output, stderr and the exit code; -i/-t says clearly when Exec is not served', async () => {
  const pod = await runPod('ctl-exec');
  const c = await runContainer(pod, 'ctl-exec', 'box', ['sleep', '3600']);
  const ok = await run('exec', c.slice(0, 8), 'sh', '-c', 'echo out; echo err >&2; exit 7');
  assert.equal(ok.code, 7);
  assert.equal(ok.stdout, 'out\n');
  assert.equal(ok.stderr, 'err\n');
  const flagsOfCmd = await run('exec', c, 'ls', '-d', '/bin');
  assert.equal(flagsOfCmd.code, 0, flagsOfCmd.stderr);
  assert.equal(flagsOfCmd.stdout, '/bin\n');
  const it = await run('exec', '-it', c, 'sh');
  if (it.code === 1 && /UNIMPLEMENTED/.test(it.stderr)) {
    assert.match(it.stderr, /^gvisor-cri ctl: exec -i\/-t in container [0-9a-f]+: this daemon does not serve interactive exec \(the Exec RPC answered UNIMPLEMENTED\); run the command without -i\/-t/);
  } else {
    // Exec is served: stdin from the pipe reaches the shell.
    const i = await ctl(d.socket, ['exec', '-i', c, 'cat'], { input: 'piped\n' });
    assert.equal(i.code, 0, i.stderr);
    assert.equal(i.stdout, 'piped\n');
  }
});
