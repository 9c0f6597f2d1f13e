import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { after, before, test } from 'node:test';
import { sandboxProcesses } from '../helpers/runtime-env.js';
import { call, containerConfig, logLines, makeCriWorld, podConfig, type CriWorld } from '../helpers/cri-world.js';
import { eventually } from '../helpers/wait.js';

let w: CriWorld;
let pod: string;
let podLogDir: string;

before(async () => {
  w = await makeCriWorld();
  const config = podConfig('main', w.logDir);
  podLogDir = config!.log_directory!;
  const t0 = Date.now();
  pod = (await call(w.rt, 'RunPodSandbox', { config, runtime_handler: '' })).pod_sandbox_id;
  console.log(`# RunPodSandbox: ${Date.now() - t0} ms`);
});

after(async () => {
  await w?.cleanup();
});

/** Creates and starts a container in the main pod; returns its id. */
async function run(name: string, o: Parameters<typeof containerConfig>[2] & { image?: string; start?: boolean } = {}): Promise<string> {
  const id = (await call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig(name, o.image ?? w.image, o) })).container_id;
  if (o.start !== false) await call(w.rt, 'StartContainer', { container_id: id });
  return id;
}

async function status(id: string) {
  return (await call(w.rt, 'ContainerStatus', { container_id: id, verbose: false })).status!;
}

async function exited(id: string) {
  return eventually(async () => {
    const s = await status(id);
    return s.state === 'CONTAINER_EXITED' ? s : undefined;
  }, 15_000, `container ${id} to exit`);
}

const log = (name: string, stream: 'stdout' | 'stderr' = 'stdout'): string[] => logLines(join(podLogDir, `${name}.log`), stream);

test('a pod is one sandbox with an IP; its two containers talk over localhost', async () => {
  const st = await call(w.rt, 'PodSandboxStatus', { pod_sandbox_id: pod, verbose: true });
  assert.equal(st.status?.state, 'SANDBOX_READY');
  assert.ok(st.status?.network?.ip.startsWith(`${w.net.prefix}.`), `pod IP ${st.status?.network?.ip} in ${w.net.subnet}`);
  assert.equal(st.status?.metadata?.name, 'main');
  assert.equal(st.status?.labels.app, 'main');
  assert.equal(st.status?.linux?.namespaces?.options?.pid, 'CONTAINER');
  const info = JSON.parse(st.info.info!) as { pid: number; netnsPath: string };
  assert.ok(info.pid > 0);
  assert.ok(info.netnsPath.startsWith(w.runDir));

  const server = await run('server', { args: ['sh', '-c', 'echo pong | nc -l -p 8080'] });
  const client = await run('client', { args: ['sh', '-c', 'for i in $(seq 1 100); do if echo ping | nc 127.0.0.1 8080; then exit 0; fi; sleep 0.1; done; exit 1'] });
  const c = await exited(client);
  const s = await exited(server);
  assert.equal(c.exit_code, 0);
  assert.equal(c.reason, 'Completed');
  assert.equal(s.exit_code, 0);
  assert.deepEqual(log('client'), ['pong']);
  assert.deepEqual(log('server'), ['ping']);
  // Both ran in the one sandbox process of the pod.
  assert.equal(sandboxProcesses(w.runsc.options.root), 1);
});

test('exit code, reason and timestamps of a failing container', async () => {
  const id = await run('fails', { args: ['sh', '-c', 'sleep 0.2; exit 3'] });
  const s = await exited(id);
  assert.equal(s.exit_code, 3);
  assert.equal(s.reason, 'Error');
  assert.ok(BigInt(s.created_at) <= BigInt(s.started_at));
  assert.ok(BigInt(s.started_at) < BigInt(s.finished_at));
  assert.equal(s.image?.image, w.image);
  assert.match(s.image_ref, /\/cri\/busybox@sha256:[0-9a-f]{64}$/);
  assert.match(s.image_id, /^sha256:/);
  assert.equal(s.log_path, join(podLogDir, 'fails.log'));
  // An exited container cannot start again or exec.
  await assert.rejects(call(w.rt, 'StartContainer', { container_id: id }), { code: 9 });
  await assert.rejects(call(w.rt, 'ExecSync', { container_id: id, cmd: ['true'], timeout: 0 }), { code: 9 });
  await call(w.rt, 'StopContainer', { container_id: id, timeout: 5 });
});

test('stop: grace period honoured then SIGKILL; the image StopSignal is used', async () => {
  const stubborn = await run('stubborn', { args: ['sh', '-c', 'trap "" TERM; echo trapped; while true; do sleep 0.1; done'] });
  const polite = await run('polite', { args: ['sh', '-c', 'trap "exit 0" TERM; echo trapped; while true; do sleep 0.1; done'] });
  const usr1 = await run('usr1', { image: w.appImage, args: ['sh', '-c', 'trap "exit 7" USR1; echo trapped; while true; do sleep 0.1; done'] });
  await eventually(async () => ['stubborn', 'polite', 'usr1'].every((n) => log(n).includes('trapped')), 10_000, 'the traps to be set');
  let t0 = Date.now();
  await call(w.rt, 'StopContainer', { container_id: polite, timeout: 10 });
  assert.ok(Date.now() - t0 < 3000, `polite stop took ${Date.now() - t0} ms`);
  assert.equal((await status(polite)).exit_code, 0);
  t0 = Date.now();
  await call(w.rt, 'StopContainer', { container_id: stubborn, timeout: 2 });
  const took = Date.now() - t0;
  assert.ok(took >= 1900 && took < 8000, `stubborn stop took ${took} ms`);
  const s = await status(stubborn);
  assert.equal(s.state, 'CONTAINER_EXITED');
  assert.equal(s.exit_code, 137);
  await call(w.rt, 'StopContainer', { container_id: usr1, timeout: 10 });
  assert.equal((await status(usr1)).exit_code, 7);
  // Stopping again is fine.
  await call(w.rt, 'StopContainer', { container_id: stubborn, timeout: 1 });
});

test('logs are in CRI format, stdout and stderr, partial last line', async () => {
  const id = await run('logger', { args: ['sh', '-c', 'echo hello; echo oops >&2; echo world; printf tail'] });
  await exited(id);
  const text = await readFile(join(podLogDir, 'logger.log'), 'utf8');
  for (const line of text.trimEnd().split('\n')) assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [PF] /);
  assert.deepEqual(log('logger'), ['hello', 'world', 'tail']);
  assert.deepEqual(log('logger', 'stderr'), ['oops']);
  assert.match(text, / stdout P tail\n/);
});

test('command/args, env, working dir and user follow Kubernetes rules', async () => {
  const script = 'echo "args=$0 $*"; echo "pwd=$(pwd)"; echo "id=$(id -u):$(id -g):$(id -G)"; echo "env=$FROM_IMAGE $OVERRIDE $NEW"';
  const a = await run('argsonly', { args: ['sh', '-c', script, 'x', 'y'], env: { OVERRIDE: 'cri', NEW: 'n=1' } });
  await exited(a);
  assert.deepEqual(log('argsonly'), ['args=x y', 'pwd=/work', 'id=0:0:0', 'env=1 cri n=1']);

  // command replaces the entrypoint and drops the image's Cmd.
  const b = await run('cmdonly', { cmd: ['echo', 'only'] });
  await exited(b);
  assert.deepEqual(log('cmdonly'), ['only']);
  const c = await run('cmdargs', { cmd: ['echo'], args: ['a', 'b'] });
  await exited(c);
  assert.deepEqual(log('cmdargs'), ['a b']);

  // run_as_user: gid from the image's passwd, groups listing the user, supplemental groups.
  const d = await run('uid', {
    args: ['sh', '-c', 'echo "$(id -u):$(id -g):$(id -G)"; pwd'],
    extra: { working_dir: '/tmp', linux: { security_context: { run_as_user: { value: 1234 }, supplemental_groups: [5000] } } },
  });
  await exited(d);
  const [ids, cwd] = log('uid');
  assert.equal(cwd, '/tmp');
  const [uid, gid, groups] = ids!.split(':');
  assert.equal(uid, '1234');
  assert.equal(gid, '2345');
  assert.deepEqual(groups!.split(' ').sort(), ['2345', '3456', '5000']);

  // A user name, from the image's User and from run_as_username, and run_as_group.
  const e = await run('imageuser', { image: w.appImage, args: ['sh', '-c', 'echo "$(id -u):$(id -g)"'] });
  const f = await run('username', { args: ['sh', '-c', 'echo "$(id -u):$(id -g)"'], extra: { linux: { security_context: { run_as_username: 'app', run_as_group: { value: 77 } } } } });
  await exited(e);
  await exited(f);
  assert.deepEqual(log('imageuser'), ['1234:2345']);
  assert.deepEqual(log('username'), ['1234:77']);
  const st = await status(f);
  assert.equal(st.user?.linux?.uid, '1234');
  assert.equal(st.user?.linux?.gid, '77');
});

test('readonly rootfs is enforced; mounts bind host dirs (readonly honoured, missing ones made)', async () => {
  const host = join(w.dir, 'hostdata');
  await mkdir(join(host, 'tmpfs'), { recursive: true });
  await writeFile(join(host, 'in.txt'), 'from-host\n');
  // Kubernetes' read-only volumes are non-recursive: a writable mount inside stays writable.
  await execa('mount', ['-t', 'tmpfs', 'none', join(host, 'tmpfs')]);
  after(() => execa('umount', ['-l', join(host, 'tmpfs')]).catch(() => undefined));
  const missing = join(w.dir, 'made', 'by', 'runtime');
  const id = await run('ro', {
    args: ['sh', '-c', 'touch /x 2>/dev/null && echo root-writable || echo root-readonly; cat /data/in.txt; touch /data/new 2>/dev/null && echo data-writable || echo data-readonly; touch /data/tmpfs/file && echo submount-writable; echo hi > /out/f && echo out-ok'],
    extra: {
      linux: { security_context: { readonly_rootfs: true } },
      mounts: [
        { container_path: '/data', host_path: host, readonly: true },
        { container_path: '/out', host_path: missing },
      ],
    },
  });
  await exited(id);
  assert.deepEqual(log('ro'), ['root-readonly', 'from-host', 'data-readonly', 'submount-writable', 'out-ok']);
  assert.equal(await readFile(join(missing, 'f'), 'utf8'), 'hi\n');
  const st = await status(id);
  assert.deepEqual(st.mounts.map((m) => [m.container_path, m.readonly]), [['/data', true], ['/out', false]]);
});

test('two containers of one image do not see each other\'s writes; the snapshot stays untouched', async () => {
  const a = await run('wa', { args: ['sh', '-c', 'echo A > /mine; sleep 0.5; cat /mine; ls /other 2>/dev/null || echo no-other'] });
  const b = await run('wb', { args: ['sh', '-c', 'echo B > /mine; echo x > /other; sleep 0.5; cat /mine'] });
  await exited(a);
  await exited(b);
  assert.deepEqual(log('wa'), ['A', 'no-other']);
  assert.deepEqual(log('wb'), ['B']);
  const rec = w.images.resolve(w.image)!;
  const rootfs = await w.images.rootfs(rec.id);
  assert.equal((await readdir(rootfs)).includes('mine'), false);
});

test('ExecSync: output, exit code, the container\'s identity, and the timeout', async () => {
  const id = await run('execme', { extra: { linux: { security_context: { run_as_user: { value: 1234 } } } }, env: { FOO: 'bar' } });
  const r = await call(w.rt, 'ExecSync', { container_id: id, cmd: ['sh', '-c', 'echo "$(id -u) $FOO $(pwd)"; echo err >&2; exit 4'], timeout: 10 });
  assert.equal(r.stdout.toString(), '1234 bar /work\n');
  assert.equal(r.stderr.toString(), 'err\n');
  assert.equal(r.exit_code, 4);
  const t0 = Date.now();
  await assert.rejects(call(w.rt, 'ExecSync', { container_id: id, cmd: ['sleep', '30'], timeout: 1 }), (err: { code: number; message: string }) => {
    assert.equal(err.code, 4);
    assert.match(err.message, /timeout 1s exceeded/);
    return true;
  });
  assert.ok(Date.now() - t0 < 5000);
  await call(w.rt, 'RemoveContainer', { container_id: id });
  await assert.rejects(call(w.rt, 'ContainerStatus', { container_id: id, verbose: false }), { code: 5 });
});

test('PID namespace: POD shares the sandbox\'s (pid 1 is the infra process, the pod\'s processes are seen), CONTAINER has its own', async () => {
  const sleeper = await run('pid-sleeper', { args: ['sleep', '3601'] });
  const shared = await run('pid-shared', { args: ['sleep', '3600'], extra: { linux: { security_context: { namespace_options: { pid: 'POD' } } } } });
  const own = await run('pid-own', { args: ['sleep', '3600'], extra: { linux: { security_context: { namespace_options: { pid: 'CONTAINER' } } } } });
  const sh = async (id: string, cmd: string): Promise<string> => (await call(w.rt, 'ExecSync', { container_id: id, cmd: ['sh', '-c', cmd], timeout: 10 })).stdout.toString();
  assert.doesNotMatch(await sh(shared, 'cat /proc/1/cmdline'), /sleep/);
  assert.match(await sh(shared, 'ps'), /sleep 3601/);
  assert.match(await sh(own, 'cat /proc/1/cmdline'), /^sleep\x003600/);
  assert.doesNotMatch(await sh(own, 'ps'), /sleep 3601/);
  for (const id of [sleeper, shared, own]) await call(w.rt, 'RemoveContainer', { container_id: id });
});

test('masked and read-only paths are applied; run_as_group without a user is refused', async () => {
  const id = await run('paths', {
    args: ['sleep', '3600'],
    extra: { linux: { security_context: { masked_paths: ['/etc/group', '/home/app', '/proc/kcore', '/nope'], readonly_paths: ['/tmp', '/proc/sys'] } } },
  });
  const sh = async (cmd: string) => call(w.rt, 'ExecSync', { container_id: id, cmd: ['sh', '-c', cmd], timeout: 10 });
  // A masked file is empty and no one's to execute; a masked directory is empty and read-only.
  assert.equal((await sh('cat /etc/group')).stdout.toString(), '');
  assert.match((await sh('ls -l /etc/group')).stdout.toString(), /^----------/);
  assert.match((await sh('/etc/group')).stderr.toString(), /Permission denied/);
  assert.equal((await sh('ls -A /home/app')).stdout.toString(), '');
  assert.match((await sh('touch /home/app/x')).stderr.toString(), /Read-only file system/);
  const ro = await sh('touch /tmp/test');
  assert.notEqual(ro.exit_code, 0);
  assert.equal(ro.stderr.toString(), 'touch: /tmp/test: Read-only file system\n');
  // The rest of the rootfs stays writable; /etc/passwd is untouched.
  assert.equal((await sh('touch /x && grep -c app /etc/passwd')).stdout.toString(), '1\n');
  await call(w.rt, 'RemoveContainer', { container_id: id });

  await assert.rejects(call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('group-only', w.image, { extra: { linux: { security_context: { run_as_group: { value: 1 } } } } }) }), (err: { code: number; message: string }) => {
    assert.equal(err.code, 3);
    assert.match(err.message, /run_as_group is set without run_as_user/);
    return true;
  });
});

test('image volumes: an image mounted read-only (executable), a sub path, digest in status; bad ones refused; holds released', async () => {
  const app = w.images.resolve(w.appImage)!;
  const mount = (extra: Record<string, unknown>) => ({ container_path: '/mnt/iv', readonly: true, image: { image: w.appImage }, ...extra });
  const id = await run('iv', { args: ['sleep', '3600'], extra: { mounts: [mount({}), mount({ container_path: '/mnt/etc', image_sub_path: 'etc' })] } });
  const exec = async (cmd: string[]) => call(w.rt, 'ExecSync', { container_id: id, cmd, timeout: 10 });
  assert.equal((await exec(['ls', '-A', '/mnt/iv/bin/sh'])).exit_code, 0);
  assert.notEqual((await exec(['touch', '/mnt/iv/test-write'])).exit_code, 0);
  assert.equal((await exec(['/mnt/iv/bin/ls', '/mnt/iv'])).exit_code, 0);
  assert.equal((await exec(['ls', '/mnt/etc/passwd'])).exit_code, 0);
  assert.notEqual((await exec(['ls', '/mnt/etc/etc/passwd'])).exit_code, 0);
  const st = (await call(w.rt, 'ContainerStatus', { container_id: id, verbose: false })).status!;
  const iv = st.mounts.find((m) => m.container_path === '/mnt/iv')!;
  assert.equal(iv.image?.image_ref, app.id);
  assert.equal(iv.host_path, '');
  assert.ok(w.images.holderIds().includes(`${id}/image-volume-0`));
  await call(w.rt, 'RemoveContainer', { container_id: id });
  assert.deepEqual(w.images.holderIds().filter((h) => h.startsWith(id)), []);

  const refused = async (extra: Record<string, unknown>, code: number, message: RegExp) =>
    assert.rejects(call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('iv-bad', w.image, { extra: { mounts: [mount(extra)] } }) }), (err: { code: number; message: string }) => {
      assert.equal(err.code, code);
      assert.match(err.message, message);
      return true;
    });
  await refused({ readonly: false }, 3, /image volume is always read-only/);
  await refused({ image_sub_path: 'not-existing' }, 3, /image_sub_path "not-existing" is not a directory/);
  await refused({ image: { image: 'nope/never:pulled' } }, 5, /image "nope\/never:pulled" of image volume/);
});

test('List filters, UpdateContainerResources and ReopenContainerLog', async () => {
  const id = await run('ticker', { args: ['sh', '-c', 'i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done'], extra: { labels: { kind: 'ticker' } } });
  const created = await run('idle', { start: false });
  const list = async (filter: object) => (await call(w.rt, 'ListContainers', { filter })).containers.map((c) => c.id);
  assert.deepEqual(await list({ label_selector: { kind: 'ticker' } }), [id]);
  assert.deepEqual(await list({ id: id.slice(0, 10) }), [id]);
  assert.deepEqual(await list({ state: { state: 'CONTAINER_CREATED' } }), [created]);
  assert.ok((await list({ pod_sandbox_id: pod, state: { state: 'CONTAINER_RUNNING' } })).includes(id));
  assert.deepEqual(await list({ pod_sandbox_id: 'f'.repeat(64) }), []);
  const pods = async (filter: object) => (await call(w.rt, 'ListPodSandbox', { filter })).items.map((p) => p.id);
  assert.deepEqual(await pods({ id: pod.slice(0, 8) }), [pod]);
  assert.deepEqual(await pods({ state: { state: 'SANDBOX_NOTREADY' } }), []);
  assert.deepEqual(await pods({ label_selector: { app: 'main' } }), [pod]);

  await call(w.rt, 'UpdateContainerResources', { container_id: id, linux: { memory_limit_in_bytes: 64 * 1024 * 1024, cpu_shares: 512 } });
  const st = await status(id);
  assert.equal(st.resources?.linux?.memory_limit_in_bytes, String(64 * 1024 * 1024));
  assert.equal(st.resources?.linux?.cpu_shares, '512');

  const path = join(podLogDir, 'ticker.log');
  await eventually(async () => log('ticker').length >= 3, 5000, 'ticks');
  await rename(path, `${path}.1`);
  await call(w.rt, 'ReopenContainerLog', { container_id: id });
  await eventually(async () => log('ticker').length >= 2, 5000, 'ticks in the reopened log');
  await call(w.rt, 'StopContainer', { container_id: id, timeout: 0 });
  await assert.rejects(call(w.rt, 'ReopenContainerLog', { container_id: id }), { code: 9 });
  await call(w.rt, 'RemoveContainer', { container_id: created });
});

test('a host-network pod gets no netns and no pod IP', async () => {
  const config = podConfig('hostnet', w.logDir, { linux: { security_context: { namespace_options: { network: 'NODE' } } } });
  const before = (await w.leftovers()).netns.length;
  const id = (await call(w.rt, 'RunPodSandbox', { config, runtime_handler: 'runsc' })).pod_sandbox_id;
  const st = await call(w.rt, 'PodSandboxStatus', { pod_sandbox_id: id, verbose: false });
  assert.equal(st.status?.state, 'SANDBOX_READY');
  assert.equal(st.status?.network?.ip, '');
  assert.equal(st.status?.runtime_handler, 'runsc');
  assert.equal((await w.leftovers()).netns.length, before);
  await call(w.rt, 'StopPodSandbox', { pod_sandbox_id: id });
  await call(w.rt, 'RemovePodSandbox', { pod_sandbox_id: id });
});

test('stopping the pod ends its containers with exit codes; removing it leaves nothing', async () => {
  const id = await run('last', {});
  await call(w.rt, 'StopPodSandbox', { pod_sandbox_id: pod });
  const st = await call(w.rt, 'PodSandboxStatus', { pod_sandbox_id: pod, verbose: false });
  assert.equal(st.status?.state, 'SANDBOX_NOTREADY');
  const s = await status(id);
  assert.equal(s.state, 'CONTAINER_EXITED');
  assert.equal(s.exit_code, 137);
  await assert.rejects(call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig('late', w.image) }), { code: 9 });
  await call(w.rt, 'StopPodSandbox', { pod_sandbox_id: pod });
  await call(w.rt, 'RemovePodSandbox', { pod_sandbox_id: pod });
  assert.deepEqual((await call(w.rt, 'ListContainers', { filter: null })).containers, []);
  assert.deepEqual((await call(w.rt, 'ListPodSandbox', { filter: null })).items, []);
  assert.deepEqual(await w.leftovers(), { netns: [], runsc: [], mounts: [] });
  assert.deepEqual(await readdir(join(w.stateDir, 'containers')), []);
  assert.deepEqual(await readdir(join(w.stateDir, 'pods')), []);
});
