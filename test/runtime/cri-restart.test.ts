import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ContainerRecord, SandboxRecord } from '../../runtime/index.js';
import { call, containerConfig, logLines, makeCriWorld, podConfig, type CriWorld } from '../helpers/cri-world.js';
import { eventually } from '../helpers/wait.js';

let w: CriWorld;

before(async () => {
  w = await makeCriWorld();
});

after(async () => {
  await w?.cleanup();
});

test('after a restart pods and containers keep their state, logs continue, exits while away are reported', async () => {
  const mainConfig = podConfig('keep', w.logDir);
  const logDir = mainConfig!.log_directory!;
  const pod = (await call(w.rt, 'RunPodSandbox', { config: mainConfig, runtime_handler: '' })).pod_sandbox_id;
  const doomedPod = (await call(w.rt, 'RunPodSandbox', { config: podConfig('doomed', w.logDir), runtime_handler: '' })).pod_sandbox_id;
  const create = async (p: string, name: string, args: string[]): Promise<string> =>
    (await call(w.rt, 'CreateContainer', { pod_sandbox_id: p, config: containerConfig(name, w.image, { args }) })).container_id;
  const start = (id: string) => call(w.rt, 'StartContainer', { container_id: id });

  const ticker = await create(pod, 'ticker', ['sh', '-c', 'i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done']);
  const quitter = await create(pod, 'quitter', ['sh', '-c', 'sleep 1.5; echo bye; exit 5']);
  const done = await create(pod, 'done', ['sh', '-c', 'echo early']);
  const fresh = await create(pod, 'fresh', ['sh', '-c', 'echo fresh-output; sleep 30']);
  const victim = await create(doomedPod, 'victim', ['sleep', '30']);
  for (const id of [ticker, quitter, done, victim]) await start(id);
  await eventually(async () => (await call(w.rt, 'ContainerStatus', { container_id: done, verbose: false })).status?.state === 'CONTAINER_EXITED', 5000, 'done to exit');
  await eventually(async () => logLines(join(logDir, 'ticker.log')).length >= 3, 5000, 'ticks');

  // The daemon goes away; its pods do not.
  await w.rt.close();
  const doomedPid = (await w.runsc.state(doomedPod)).pid;
  process.kill(doomedPid, 'SIGKILL');
  // Half-made objects of a crash mid-create, to be rolled back.
  const halfPod: SandboxRecord = { id: 'c'.repeat(64), name: 'half', namespace: 'test', uid: 'u', attempt: 0, phase: 'creating', createdAtNs: '1', runtimeHandler: '', labels: {}, annotations: {}, hostname: 'half', logDirectory: '', hostNetwork: false, namespaceModes: { network: 'POD', pid: 'POD', ipc: 'POD' }, privileged: false, ips: [] };
  await writeFile(join(w.stateDir, 'pods', `${halfPod.id}.json`), JSON.stringify(halfPod));
  const halfCtr = { id: 'd'.repeat(64), sandboxId: pod, name: 'half', attempt: 0, phase: 'creating', imageId: '', mounts: [] } as unknown as ContainerRecord;
  await writeFile(join(w.stateDir, 'containers', `${halfCtr.id}.json`), JSON.stringify(halfCtr));
  const ticksBefore = logLines(join(logDir, 'ticker.log')).length;
  // The quitter exits while the daemon is away (its exit is learnt at restart).
  await eventually(async () => (await w.runsc.state(quitter)).status === 'stopped', 10_000, 'the quitter to exit while the daemon is away');

  const rt = await w.reopen();
  const pods = (await call(rt, 'ListPodSandbox', { filter: null })).items;
  assert.deepEqual(pods.map((p) => [p.id, p.state]).sort(), [[pod, 'SANDBOX_READY'], [doomedPod, 'SANDBOX_NOTREADY']].sort());
  const states = Object.fromEntries((await call(rt, 'ListContainers', { filter: null })).containers.map((c) => [c.metadata?.name, c.state]));
  assert.deepEqual(states, { ticker: 'CONTAINER_RUNNING', quitter: 'CONTAINER_EXITED', done: 'CONTAINER_EXITED', fresh: 'CONTAINER_CREATED', victim: 'CONTAINER_EXITED' });

  const q = (await call(rt, 'ContainerStatus', { container_id: quitter, verbose: false })).status!;
  assert.equal(q.exit_code, 5, 'the exit that happened while the daemon was away');
  assert.equal(q.reason, 'Error');
  // Not asserted: output of a container that exits while the daemon is away dies with
  // the pipe (its last open descriptor was the sandbox's), see the runtime report.
  assert.equal((await call(rt, 'ContainerStatus', { container_id: done, verbose: false })).status?.exit_code, 0);
  const v = (await call(rt, 'ContainerStatus', { container_id: victim, verbose: false })).status!;
  assert.equal(v.exit_code, 255);
  assert.equal(v.reason, 'Unknown');

  // The ticker's output written while nobody read waited in the pipe: no tick is lost.
  await eventually(async () => logLines(join(logDir, 'ticker.log')).length > ticksBefore + 20, 5000, 'ticks after the restart');
  const ticks = logLines(join(logDir, 'ticker.log'));
  assert.deepEqual(ticks, ticks.map((_, i) => `tick${i}`));

  // A container created before the restart starts after it, with its output logged.
  await call(rt, 'StartContainer', { container_id: fresh });
  await eventually(async () => logLines(join(logDir, 'fresh.log')).includes('fresh-output'), 5000, 'fresh output');
  const r = await call(rt, 'ExecSync', { container_id: ticker, cmd: ['echo', 'still-here'], timeout: 5 });
  assert.equal(r.stdout.toString(), 'still-here\n');

  // The half-made records are gone.
  assert.equal((await readdir(join(w.stateDir, 'pods'))).includes(`${halfPod.id}.json`), false);
  assert.equal((await readdir(join(w.stateDir, 'containers'))).includes(`${halfCtr.id}.json`), false);

  await call(rt, 'StopContainer', { container_id: ticker, timeout: 0 });
  assert.equal((await call(rt, 'ContainerStatus', { container_id: ticker, verbose: false })).status?.exit_code, 137);
  for (const p of [pod, doomedPod]) {
    await call(rt, 'StopPodSandbox', { pod_sandbox_id: p });
    await call(rt, 'RemovePodSandbox', { pod_sandbox_id: p });
  }
  assert.deepEqual(await w.leftovers(), { netns: [], runsc: [], mounts: [] });
});

test('a container record written at once by its exit, resource updates and status reads stays readable, and a restart recovers the container', async () => {
  const config = podConfig('racing', w.logDir);
  const pod = (await call(w.rt, 'RunPodSandbox', { config, runtime_handler: '' })).pod_sandbox_id;
  const id = (await call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('racer', w.image, { args: ['sh', '-c', 'sleep 0.5; exit 3'] }) })).container_id;
  await call(w.rt, 'StartContainer', { container_id: id });
  const recordFile = join(w.stateDir, 'containers', `${id}.json`);
  // Updates and status reads in flight before, during and after the exit is recorded.
  let shares = 2;
  let exited = false;
  const status = async (): Promise<string | undefined> => (await call(w.rt, 'ContainerStatus', { container_id: id, verbose: false })).status?.state;
  const flood = async (): Promise<void> => {
    for (let after = 0; after < 20; ) {
      const updates: Promise<unknown>[] = Array.from({ length: 10 }, () => call(w.rt, 'UpdateContainerResources', { container_id: id, linux: { cpu_shares: String(++shares) } }));
      await Promise.all([...updates, status()]);
      if (exited) after++;
      else exited = (await status()) === 'CONTAINER_EXITED';
    }
  };
  await Promise.all([flood(), flood(), flood()]);
  const onDisk = JSON.parse(await readFile(recordFile, 'utf8')) as ContainerRecord;
  assert.equal(onDisk.phase, 'exited');
  assert.equal(onDisk.exitCode, 3);
  assert.equal(onDisk.resources.cpuShares, shares, 'the last update is what the file holds');

  await w.rt.close();
  const rt = await w.reopen();
  const s = (await call(rt, 'ContainerStatus', { container_id: id, verbose: false })).status!;
  assert.equal(s.state, 'CONTAINER_EXITED');
  assert.equal(s.exit_code, 3);
  assert.equal(s.resources?.linux?.cpu_shares, String(shares));
  await call(rt, 'StopPodSandbox', { pod_sandbox_id: pod });
  await call(rt, 'RemovePodSandbox', { pod_sandbox_id: pod });
});

test('a tty container created before a restart starts after it: the terminal the reaper listens for carries its output', async () => {
  const pod = (await call(w.rt, 'RunPodSandbox', { config: podConfig('ttyrestart', w.logDir), runtime_handler: '' })).pod_sandbox_id;
  const id = (await call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('term', w.image, { args: ['sh', '-c', 'echo term-output; sleep 30'], extra: { tty: true } }) })).container_id;
  await w.rt.close();
  const rt = await w.reopen();
  assert.equal((await call(rt, 'ContainerStatus', { container_id: id, verbose: false })).status?.state, 'CONTAINER_CREATED');
  await call(rt, 'StartContainer', { container_id: id });
  // The terminal's line discipline ends the line with \r\n: the output came through the pty.
  const log = join(w.logDir, 'ttyrestart', 'term.log');
  await eventually(async () => / stdout F term-output\r\n/.test(await readFile(log, 'utf8').catch(() => '')), 10_000, 'the terminal\'s output in the log');
  await call(rt, 'StopPodSandbox', { pod_sandbox_id: pod });
  await call(rt, 'RemovePodSandbox', { pod_sandbox_id: pod });
});
