/**
 * The CRI socket as grpc-go sees it: the client stack of kubelet, crictl and
 * critest (Debian's grpc-go 1.33, built here), dialling as kubelet <= 1.30
 * did (the socket path as target, so as :authority) and as newer clients do
 * (localhost). Our other clients are grpc-js (our server's own stack),
 * python3-grpcio (authority.test.ts) and hand-made frames.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startDaemon, testConflist, removeAllPods, waitFor, type TestDaemon } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { buildGoCriClient, Code, encodeRequest, GoCriClient, type GoBuild } from '../helpers/go-cri-client.js';

let build: GoBuild;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
/** kubelet's way: the socket path is the target, and so the :authority. */
let kubelet: GoCriClient;
let localhost: GoCriClient;
/** The pod and container the lifecycle test starts and the last test removes. */
let pod = '';
let workload = '';

const podConfig = () => ({
  metadata: { name: 'go-pod', uid: 'uid-go-pod', namespace: 'grpc-go', attempt: 0 },
  hostname: 'go-pod',
  log_directory: join(d.logDir, 'go-pod'),
  labels: { client: 'grpc-go' },
  // A request over 64 KiB: more than grpc-go's first flow-control window, so it waits for our WINDOW_UPDATEs.
  annotations: { 'example.com/large': 'a'.repeat(96 * 1024) },
});

const execSync = (container_id: string, cmd: string[], timeoutMs?: number) =>
  kubelet.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id, cmd, timeout: 30 }, timeoutMs);

/** How many times the daemon logged `line` so far. */
const logged = (line: string): number => d.output().split(line).length - 1;

before(async () => {
  // The build (a second or two once Go's cache is warm) runs while the daemon starts.
  [build] = await Promise.all([
    buildGoCriClient(),
    (async () => {
      registry = await startRegistry();
      image = (await pushTestImage(registry.url, 'e2e/go-client', {
        layers: [{ entries: busyboxEntries([...BUSYBOX_APPLETS, 'head', 'yes', 'wc']) }],
        config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
      })).ref;
      d = await startDaemon({ conflist: testConflist('go-client') });
    })(),
  ]);
  kubelet = new GoCriClient(build.binary, d.socket, 'path');
  localhost = new GoCriClient(build.binary, d.socket, 'localhost');
});

after(async () => {
  await Promise.all([kubelet?.close(), localhost?.close()]);
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  await build?.cleanup();
});

test('without Go or grpc-go the build fails naming what to install, not by skipping', async () => {
  await assert.rejects(buildGoCriClient({ go: '/nonexistent/go' }), /no Go toolchain .*scripts\/setup\.sh.*golang-go and golang-google-grpc-dev/);
  await assert.rejects(buildGoCriClient({ gopath: '/nonexistent/gocode' }), /grpc-go is not in \/nonexistent\/gocode; .*golang-google-grpc-dev/);
});

test('Version, RuntimeConfig and Status answer grpc-go with the socket path and with localhost as :authority', async () => {
  for (const c of [kubelet, localhost]) {
    const v = await c.ok<{ runtime_name: string; runtime_api_version: string }>('runtime', 'Version', { version: 'v1' });
    assert.equal(v.runtime_name, 'gvisor-cri', c.authority);
    assert.equal(v.runtime_api_version, 'v1', c.authority);
    const config = await c.ok<{ linux: { cgroup_driver: string } }>('runtime', 'RuntimeConfig', {});
    assert.match(config.linux.cgroup_driver, /^(SYSTEMD|CGROUPFS)$/, c.authority);
    const status = await c.ok<{ status: { conditions: { type: string; status: boolean }[] } }>('runtime', 'Status', {});
    assert.deepEqual(
      status.status.conditions.map((x) => [x.type, x.status]),
      [['RuntimeReady', true], ['NetworkReady', true]],
      c.authority,
    );
  }
  // What went on the wire, read back from grpc-go's own frames.
  assert.deepEqual(kubelet.sentAuthorities, [d.socket]);
  assert.deepEqual(localhost.sentAuthorities, ['localhost']);
});

test('a pod and a container through grpc-go: pull, run, create, start, list, status, exec', async () => {
  await kubelet.ok('image', 'PullImage', { image: { image } });
  const run = await kubelet.ok<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig() });
  pod = run.pod_sandbox_id;
  assert.match(pod, /^[0-9a-f]{64}$/);
  // A response over 64 KiB back: the pod's status carries the large annotation.
  const podStatus = await kubelet.ok<{ status: { state: string; annotations: Record<string, string> } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: pod });
  assert.equal(podStatus.status.state, 'SANDBOX_READY');
  assert.equal(podStatus.status.annotations['example.com/large'], 'a'.repeat(96 * 1024));

  const config = { metadata: { name: 'workload', attempt: 0 }, image: { image }, command: ['sleep', '3600'], log_path: 'workload.log' };
  workload = (await kubelet.ok<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig() })).container_id;
  assert.match(workload, /^[0-9a-f]{64}$/);
  await kubelet.ok('runtime', 'StartContainer', { container_id: workload });

  const list = await kubelet.ok<{ containers: { id: string; state: string; metadata: { name: string } }[] }>('runtime', 'ListContainers', { filter: { pod_sandbox_id: pod } });
  assert.deepEqual(list.containers.map((c) => [c.id, c.metadata.name, c.state]), [[workload, 'workload', 'CONTAINER_RUNNING']]);
  const status = await kubelet.ok<{ status: { id: string; state: string; image: { image: string }; started_at: string } }>('runtime', 'ContainerStatus', { container_id: workload });
  assert.equal(status.status.id, workload);
  assert.equal(status.status.state, 'CONTAINER_RUNNING');
  assert.ok(BigInt(status.status.started_at) > 0n, `started_at ${status.status.started_at}`);

  const hello = await execSync(workload, ['sh', '-c', 'echo hello from $0; echo oops >&2; exit 3', 'grpc-go']);
  assert.equal(hello.code, Code.OK, hello.message);
  assert.equal(hello.res!.stdout.toString(), 'hello from grpc-go\n');
  assert.equal(hello.res!.stderr.toString(), 'oops\n');
  assert.equal(hello.res!.exit_code, 3);
});

test('error statuses reach grpc-go with their code and our message', async () => {
  const missing = await kubelet.call('runtime', 'ContainerStatus', { container_id: 'no-such-container' });
  assert.equal(missing.code, Code.NOT_FOUND, missing.message);
  assert.match(missing.message, /container "no-such-container" not found/);

  const noCmd = await localhost.call('runtime', 'ExecSync', { container_id: workload, cmd: [] });
  assert.equal(noCmd.code, Code.INVALID_ARGUMENT, noCmd.message);
  assert.match(noCmd.message, /cmd must name a program to run/);

  const unknown = await kubelet.raw('/runtime.v1.RuntimeService/NoSuchMethod', encodeRequest('runtime', 'Version', { version: 'v1' }));
  assert.equal(unknown.code, Code.UNIMPLEMENTED, unknown.message);
  // The connection outlives the failures.
  assert.equal((await kubelet.ok<{ runtime_name: string }>('runtime', 'Version', {})).runtime_name, 'gvisor-cri');
});

test("a grpc-go deadline shorter than the call is DEADLINE_EXCEEDED, and the daemon kills the call's process", async () => {
  const slow = await execSync(workload, ['sleep', '37'], 1_000);
  assert.equal(slow.code, Code.DEADLINE_EXCEEDED, slow.message);
  await waitFor(async () => {
    const ps = await execSync(workload, ['ps']);
    return ps.code === Code.OK && !ps.res!.stdout.toString().includes('sleep 37');
  }, 30_000, 'the timed-out exec to be killed');
});

test('50 concurrent calls on one grpc-go connection all answer, each with its own response', async () => {
  const calls = Array.from({ length: 50 }, async (_, i) => {
    if (i % 10 === 0) {
      const r = await execSync(workload, ['echo', `call-${i}`]);
      assert.equal(r.code, Code.OK, r.message);
      assert.equal(r.res!.stdout.toString(), `call-${i}\n`);
    } else if (i % 2 === 0) {
      const s = await kubelet.ok<{ status: { id: string; metadata: { name: string } } }>('runtime', 'ContainerStatus', { container_id: workload });
      assert.equal(s.status.metadata.name, 'workload');
    } else if (i % 3 === 0) {
      const l = await kubelet.ok<{ items: { id: string }[] }>('runtime', 'ListPodSandbox', {});
      assert.deepEqual(l.items.map((p) => p.id), [pod]);
    } else {
      const missing = await kubelet.call('runtime', 'PodSandboxStatus', { pod_sandbox_id: `missing-${i}` });
      assert.equal(missing.code, Code.NOT_FOUND);
      assert.match(missing.message, new RegExp(`missing-${i}`));
    }
  });
  await Promise.all(calls);
});

test('HTTP/2 flow control both ways: a 100 KiB exec request, 1 MiB of exec output', async () => {
  const arg = 'x'.repeat(100 * 1024);
  const echo = await execSync(workload, ['sh', '-c', 'printf %s "$1" | wc -c', 'sh', arg]);
  assert.equal(echo.code, Code.OK, echo.message);
  assert.equal(echo.res!.stdout.toString().trim(), String(arg.length));

  const big = await execSync(workload, ['sh', '-c', 'yes 0123456789abcdef | head -c 1048576']);
  assert.equal(big.code, Code.OK, big.message);
  const out = big.res!.stdout;
  assert.equal(out.length, 1024 * 1024);
  assert.ok(out.equals(Buffer.from('0123456789abcdef\n'.repeat(Math.ceil(out.length / 17)).slice(0, out.length))), 'stdout is not the expected pattern');
});

test('GetContainerEvents streams a container start to grpc-go, and its cancel reaches the daemon', async () => {
  const joined = logged('container event subscriber joined');
  const left = logged('container event subscriber left');
  const events = kubelet.stream<{ container_id: string; container_event_type: string; pod_sandbox_status: { id: string } }>('runtime', 'GetContainerEvents', {}, 2);
  await waitFor(async () => logged('container event subscriber joined') > joined, 30_000, 'the daemon to subscribe the stream');

  const config = { metadata: { name: 'events', attempt: 0 }, image: { image }, command: ['sleep', '3600'], log_path: 'events.log' };
  const id = (await kubelet.ok<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig() })).container_id;
  await kubelet.ok('runtime', 'StartContainer', { container_id: id });

  const r = await events;
  assert.equal(r.code, Code.CANCELLED, r.message);
  assert.deepEqual(r.responses.map((e) => [e.container_id, e.container_event_type, e.pod_sandbox_status.id]), [
    [id, 'CONTAINER_CREATED_EVENT', pod],
    [id, 'CONTAINER_STARTED_EVENT', pod],
  ]);
  await waitFor(async () => logged('container event subscriber left') > left, 30_000, 'the daemon to drop the cancelled stream');
});

test('a grpc-go client that cannot connect fails its calls with the dial error', async () => {
  const lost = new GoCriClient(build.binary, join(d.dir, 'no-such.sock'), 'path', { dialTimeoutMs: 300 });
  await assert.rejects(lost.raw('/runtime.v1.RuntimeService/Version', Buffer.alloc(0)), /go-cri-client \(path\) exited \(1\):\ngo-cri-client: dial .*no-such\.sock/);
  assert.equal(await lost.close(), 1);
});

test('stop and remove through grpc-go: container, then pod; nothing is left', async () => {
  await kubelet.ok('runtime', 'StopContainer', { container_id: workload, timeout: 5 });
  const stopped = await kubelet.ok<{ status: { state: string } }>('runtime', 'ContainerStatus', { container_id: workload });
  assert.equal(stopped.status.state, 'CONTAINER_EXITED');
  await kubelet.ok('runtime', 'RemoveContainer', { container_id: workload });
  const gone = await kubelet.call('runtime', 'ContainerStatus', { container_id: workload });
  assert.equal(gone.code, Code.NOT_FOUND, gone.message);

  await kubelet.ok('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
  await kubelet.ok('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
  assert.deepEqual((await kubelet.ok<{ items: unknown[] }>('runtime', 'ListPodSandbox', {})).items, []);
  assert.deepEqual((await localhost.ok<{ containers: unknown[] }>('runtime', 'ListContainers', {})).containers, []);
});
