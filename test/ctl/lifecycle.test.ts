// gvisor-cri ctl on real pods and containers: logs (following a kubelet-style
// rotation), stop, rm, stopp, rmp.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { makeCtlPodWorld } from '../helpers/ctl-pods.js';
import { ctl, startCtl } from '../helpers/ctl-run.js';

const w = await makeCtlPodWorld(14);
after(() => w.cleanup());
const { d, runPod, runContainer, state, waitExited } = w;
const run = (...args: string[]) => ctl(d.socket, args);

test('logs: content by stream, --tail, -f across a rotation until the container exits', async () => {
  const pod = await runPod('ctl-logs');
  const done = await runContainer(pod, 'ctl-logs', 'done', ['sh', '-c', 'for i in $(seq 1 5); do echo out$i; echo err$i >&2; done; printf partial']);
  await waitExited(done);
  const all = await run('logs', done.slice(0, 10));
  assert.equal(all.code, 0, all.stderr);
  assert.equal(all.stdout, 'out1\nout2\nout3\nout4\nout5\npartial');
  assert.equal(all.stderr, 'err1\nerr2\nerr3\nerr4\nerr5\n');
  // --tail counts lines of both streams in file order (the two pipes interleave as they please).
  const tail = await run('logs', '--tail', '3', done);
  assert.equal(tail.code, 0, tail.stderr);
  const last3 = (await readFile(join(d.logDir, 'ctl-logs', 'done.log'), 'utf8')).trimEnd().split('\n').slice(-3).map((l) => l.split(' '));
  const expect = (stream: string): string => last3.filter((f) => f[1] === stream).map((f) => f[3] + (f[2] === 'F' ? '\n' : '')).join('');
  assert.equal(tail.stdout, expect('stdout'));
  assert.equal(tail.stderr, expect('stderr'));

  // 40 lines over ~4 s; the log is rotated the way kubelet does (rename, then ReopenContainerLog) in the middle.
  const slow = await runContainer(pod, 'ctl-logs', 'slow', ['sh', '-c', 'sleep 0.5; for i in $(seq 1 40); do echo line$i; sleep 0.1; done']);
  const follower = startCtl(d.socket, ['logs', '-f', slow], { timeoutMs: 40_000 });
  const logPath = join(d.logDir, 'ctl-logs', 'slow.log');
  const deadline = Date.now() + 15_000;
  while (!follower.stdout().includes('line10\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await rename(logPath, `${logPath}.1`);
  await d.call('runtime', 'ReopenContainerLog', { container_id: slow });
  const r = await follower.done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, Array.from({ length: 40 }, (_, i) => `line${i + 1}\n`).join(''), 'every line once, in order, and -f ended when the container exited');
});

test('stop, rm, stopp, rmp; ambiguity and refusing to remove running things', async () => {
  const pod = await runPod('ctl-rm');
  const a = await runContainer(pod, 'ctl-rm', 'a', ['sleep', '3600']);
  const b = await runContainer(pod, 'ctl-rm', 'b', ['sleep', '3600']);
  const amb = await run('inspect', '');
  assert.equal(amb.code, 2);
  let common = 0;
  while (a[common] === b[common]) common++;
  if (common > 0) {
    // Containers of the other tests in this daemon may share the prefix too.
    const prefix = a.slice(0, common);
    const { containers } = await d.call<{ containers: { id: string }[] }>('runtime', 'ListContainers', {});
    const r = await run('inspect', prefix);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`is ambiguous: it matches ${containers.filter((c) => c.id.startsWith(prefix)).length} containers`));
  }
  const refused = await run('rm', a);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /it is running; stop it first or use rm -f/);
  const stopped = await run('stop', '-t', '1', a.slice(0, 12));
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal(stopped.stdout, `${a}\n`);
  assert.equal(await state(a), 'CONTAINER_EXITED');
  assert.equal((await run('rm', a)).stdout, `${a}\n`);
  const forced = await run('rm', '-f', b);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal((await run('ps', '-a', '-q')).stdout.includes(b), false);

  const podRefused = await run('rmp', pod);
  assert.equal(podRefused.code, 1);
  assert.match(podRefused.stderr, /is ready \(running\); stop it first with stopp or use rmp -f/);
  const sp = await run('stopp', pod.slice(0, 9));
  assert.equal(sp.code, 0, sp.stderr);
  assert.equal(sp.stdout, `Stopped sandbox ${pod}\n`);
  assert.match((await run('pods')).stdout, new RegExp(`${pod.slice(0, 13)}\\s.*\\sNotReady\\s+ctl-rm\\s`));
  const rp = await run('rmp', pod);
  assert.equal(rp.stdout, `Removed sandbox ${pod}\n`);
  const gone = await run('inspectp', pod);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^gvisor-cri ctl: pod "[0-9a-f]+" not found/);

  const other = await runPod('ctl-rmf');
  await runContainer(other, 'ctl-rmf', 'c', ['sleep', '3600']);
  const rmf = await run('rmp', '-f', 'ctl-rmf');
  assert.equal(rmf.code, 0, rmf.stderr);
  assert.equal(rmf.stdout, `Removed sandbox ${other}\n`);
});
