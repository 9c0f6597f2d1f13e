// Pods and containers end to end, as kubelet drives them: the real daemon over its socket,
// real runsc, real CNI bridge networking into gVisor, a real registry. Includes killing the
// daemon with SIGKILL while pods run.
import { test, after, afterEach, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startDaemon, testConflist, type TestDaemon, waitFor, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { freePort } from '../helpers/network-env.js';
import { isUpgrade, spdyUpgrade } from '../helpers/stream-client.js';

const INDEX = 3;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;

before(async () => {
  registry = await startRegistry();
  const pushed = await pushTestImage(registry.url, 'e2e/pods', {
    layers: [{ entries: busyboxEntries([...new Set([...BUSYBOX_APPLETS, 'seq', 'tail'])]) }],
    config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
  });
  image = pushed.ref;
  d = await startDaemon({ conflist: testConflist(INDEX) });
  await d.call('image', 'PullImage', { image: { image } });
});

// Each test starts from no pods, even after an earlier one failed midway.
afterEach(() => removeAllPods(d));

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
});

interface Pod { id: string; state: string; metadata: { name: string } }
interface ContainerStatus { id: string; state: string; exit_code: number; reason: string; log_path: string }

const listPods = async (): Promise<Pod[]> => (await d.call<{ items: Pod[] }>('runtime', 'ListPodSandbox', {})).items;

function podConfig(name: string, extra: Record<string, unknown> = {}) {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 },
    hostname: name,
    log_directory: join(d.logDir, name),
    labels: { app: name },
    ...extra,
  };
}

async function runPod(name: string, extra: Record<string, unknown> = {}): Promise<string> {
  const config = podConfig(name, extra);
  return (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config })).pod_sandbox_id;
}

async function runContainer(pod: string, podName: string, name: string, cmd: string[], extra: Record<string, unknown> = {}): Promise<string> {
  const config = { metadata: { name, attempt: 0 }, image: { image }, command: cmd, log_path: `${name}.log`, ...extra };
  const { container_id } = await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig(podName) });
  await d.call('runtime', 'StartContainer', { container_id });
  return container_id;
}

async function execSync(id: string, cmd: string[], timeout = 20): Promise<{ stdout: string; stderr: string; exit_code: number }> {
  const r = await d.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: id, cmd, timeout });
  return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), exit_code: r.exit_code };
}

/** The state files runsc keeps under the daemon's runsc root, one per container it knows. */
async function runscStates(): Promise<string[]> {
  return (await readdir(join(d.runDir, 'runsc')).catch(() => [] as string[])).filter((f) => f.endsWith('.state'));
}

/** `runsc wait` processes on the daemon's runsc root. */
async function runscWaits(): Promise<string[]> {
  const root = `--root=${join(d.runDir, 'runsc')}`;
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.includes(root) && argv.includes('wait')) found.push(argv.join(' '));
  }
  return found;
}

async function containerStatus(id: string): Promise<ContainerStatus> {
  return (await d.call<{ status: ContainerStatus }>('runtime', 'ContainerStatus', { container_id: id })).status;
}


function httpGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

const HTTPD = ['sh', '-c', 'mkdir -p /www && echo "pong from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www'];

test('pods: two containers share a sandbox, pods reach each other over their IPs, hostPort and DNS work', async () => {
  const hostPort = await freePort();
  const a = await runPod('web', {
    port_mappings: [{ protocol: 'TCP', container_port: 8080, host_port: hostPort }],
    dns_config: { servers: ['10.96.0.10'], searches: ['e2e.svc.cluster.local'], options: ['ndots:5'] },
  });
  const server = await runContainer(a, 'web', 'server', HTTPD);
  const sidecar = await runContainer(a, 'web', 'sidecar', ['sleep', '3600']);

  // Same sandbox: the sidecar reaches the server on localhost.
  const local = await waitFor(async () => {
    const r = await execSync(sidecar, ['wget', '-q', '-O', '-', 'http://127.0.0.1:8080/']);
    return r.exit_code === 0 ? r.stdout : undefined;
  }, 15_000, 'httpd on localhost');
  assert.equal(local.trim(), 'pong from web');

  const st = await d.call<{ status: { network: { ip: string }; state: string; linux: unknown } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: a });
  assert.equal(st.status.state, 'SANDBOX_READY');
  const ipA = st.status.network.ip;
  assert.match(ipA, /^10\.\d+\.\d+\.\d+$/);

  // Another pod reaches it over the bridge, inside gVisor on both ends.
  const b = await runPod('client');
  const client = await runContainer(b, 'client', 'client', ['sleep', '3600']);
  const remote = await execSync(client, ['wget', '-q', '-O', '-', `http://${ipA}:8080/`]);
  assert.equal(remote.exit_code, 0, remote.stderr);
  assert.equal(remote.stdout.trim(), 'pong from web');
  const ipB = (await d.call<{ status: { network: { ip: string } } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: b })).status.network.ip;
  assert.notEqual(ipB, ipA);

  // hostPort through portmap, from the host's loopback; the first packets may wait for the pod's neighbour entry.
  const viaHostPort = await waitFor(async () => (await httpGet(hostPort)).trim(), 15_000, `hostPort ${hostPort}`);
  assert.equal(viaHostPort, 'pong from web');

  // DNS config lands in the containers' resolv.conf; hosts has the pod's name and IP.
  const resolv = (await execSync(server, ['cat', '/etc/resolv.conf'])).stdout;
  assert.match(resolv, /^nameserver 10\.96\.0\.10$/m);
  assert.match(resolv, /^search e2e\.svc\.cluster\.local$/m);
  assert.match(resolv, /^options ndots:5$/m);
  const hosts = (await execSync(server, ['cat', '/etc/hosts'])).stdout;
  assert.match(hosts, new RegExp(`^${ipA.replaceAll('.', '\\.')}\\s+web`, 'm'));

  // One sandbox per pod: both pods' sandboxes exist, nothing more.
  const pods = await listPods();
  assert.deepEqual(pods.map((p) => p.metadata.name).sort(), ['client', 'web']);

  for (const p of [a, b]) {
    await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: p });
    await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p });
  }
  assert.deepEqual(await listPods(), []);
  assert.deepEqual(await readdir(join(d.runDir, 'netns')).catch(() => []), []);
});

test('bad input gets clear statuses and leaves nothing behind', async () => {
  const expectCode = (code: grpc.status, re: RegExp) => (err: grpc.ServiceError) => {
    assert.equal(err.code, code, err.details);
    assert.match(err.details, re);
    return true;
  };
  await assert.rejects(d.call('runtime', 'PodSandboxStatus', { pod_sandbox_id: 'f'.repeat(64) }), expectCode(grpc.status.NOT_FOUND, /f{12}/));
  await assert.rejects(d.call('runtime', 'ContainerStatus', { container_id: 'e'.repeat(64) }), expectCode(grpc.status.NOT_FOUND, /e{12}/));
  await assert.rejects(d.call('runtime', 'RunPodSandbox', { config: { metadata: { uid: 'u', namespace: 'n' } } }), expectCode(grpc.status.INVALID_ARGUMENT, /metadata\.name/));
  await assert.rejects(d.call('runtime', 'RunPodSandbox', { config: podConfig('h'), runtime_handler: 'kata' }), expectCode(grpc.status.NOT_FOUND, /kata/));

  // A sysctl gVisor does not implement fails the pod clearly and rolls everything back.
  await assert.rejects(
    d.call('runtime', 'RunPodSandbox', { config: podConfig('sysctl', { linux: { sysctls: { 'kernel.shm_rmid_forced': '1' } } }) }),
    expectCode(grpc.status.FAILED_PRECONDITION, /kernel\.shm_rmid_forced=1/),
  );
  assert.deepEqual(await listPods(), []);
  assert.deepEqual(await readdir(join(d.runDir, 'netns')).catch(() => []), []);

  const pod = await runPod('bad');
  await assert.rejects(
    d.call('runtime', 'CreateContainer', { pod_sandbox_id: pod, config: { metadata: { name: 'x' }, image: { image: `${registry.host}/e2e/nothere:1` } } }),
    expectCode(grpc.status.NOT_FOUND, /e2e\/nothere/),
  );
  await assert.rejects(d.call('runtime', 'RunPodSandbox', { config: podConfig('bad') }), expectCode(grpc.status.ALREADY_EXISTS, /bad/));
  await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
  await assert.rejects(
    d.call('runtime', 'CreateContainer', { pod_sandbox_id: pod, config: { metadata: { name: 'late' }, image: { image } } }),
    expectCode(grpc.status.FAILED_PRECONDITION, /not ready|NOTREADY|stopped/i),
  );
  const containers = await d.call<{ containers: unknown[] }>('runtime', 'ListContainers', { filter: { pod_sandbox_id: pod } });
  assert.deepEqual(containers.containers, []);
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
});

test('a container is runsc\'s only from StartContainer: a missing program fails the start, exits it with StartError, leaves no runsc state, and the pod goes on', async () => {
  const pod = await runPod('nostart');
  const before = await runscStates();
  const config = { metadata: { name: 'missing', attempt: 0 }, image: { image }, command: ['/no/such/program'], log_path: 'missing.log' };
  const { container_id: id } = await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('nostart') });
  assert.equal((await containerStatus(id)).state, 'CONTAINER_CREATED');
  assert.deepEqual(await runscStates(), before, 'CreateContainer hands nothing to runsc');
  await assert.rejects(d.call('runtime', 'StartContainer', { container_id: id }), (err: grpc.ServiceError) => {
    assert.match(err.details, /start container missing/);
    assert.match(err.details, /\/no\/such\/program/);
    return true;
  });
  const st = await containerStatus(id);
  assert.equal(st.state, 'CONTAINER_EXITED');
  assert.equal(st.reason, 'StartError');
  assert.deepEqual(await runscStates(), before, 'the failed run left no runsc state');
  await d.call('runtime', 'RemoveContainer', { container_id: id });
  const ok = await runContainer(pod, 'nostart', 'after', ['sleep', '3600']);
  assert.equal((await execSync(ok, ['echo', 'fine'])).stdout, 'fine\n');
});

test('SIGKILL of the daemon loses no pod, no log line and no exit code', async () => {
  const pod = await runPod('survivor');
  // Both tickers pause after their 5th line, and the daemon is killed in that pause: a line the daemon
  // has read but not yet written when it dies is lost (README, "Restarts lose nothing"), and this test
  // is about what is written while no daemon runs.
  const ticker = await runContainer(pod, 'survivor', 'ticker', ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo "tick $i"; [ $i -eq 5 ] && sleep 3; sleep 0.1; done']);
  const quitter = await runContainer(pod, 'survivor', 'quitter', ['sh', '-c', 'sleep 2; echo bye; exit 3']);
  // A tty container's terminal lives in the reaper, which outlives the daemon.
  const tty = await runContainer(pod, 'survivor', 'tty', ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo "tty $i $(busybox stty size)"; [ $i -eq 5 ] && sleep 3; sleep 0.1; done'], { tty: true });
  const logPath = (await containerStatus(ticker)).log_path;
  const ttyLog = (await containerStatus(tty)).log_path;
  await waitFor(async () => ((await readFile(logPath, 'utf8')).includes('tick 5') ? true : undefined), 10_000, 'first ticks');
  await waitFor(async () => ((await readFile(ttyLog, 'utf8')).includes('tty 5 ') ? true : undefined), 10_000, 'first tty ticks');

  d.proc.kill('SIGKILL');
  await new Promise((r) => d.proc.once('exit', r));
  await new Promise((r) => setTimeout(r, 3000));
  d = await startDaemon({ reuse: d, conflist: testConflist(INDEX) });

  const pods = await listPods();
  assert.deepEqual(pods.map((p) => [p.metadata.name, p.state]), [['survivor', 'SANDBOX_READY']]);
  assert.equal((await containerStatus(ticker)).state, 'CONTAINER_RUNNING');
  const q = await waitFor(async () => {
    const s = await containerStatus(quitter);
    return s.state === 'CONTAINER_EXITED' ? s : undefined;
  }, 10_000, 'quitter exited');
  assert.equal(q.exit_code, 3);
  assert.equal(q.reason, 'Error');
  // What it wrote just before exiting while no daemon read it is in its log.
  await waitFor(async () => ((await readFile(q.log_path, 'utf8')).includes('stdout F bye') ? true : undefined), 5_000, "quitter's last line");

  // Ticks written while the daemon was dead are all there, in order, after it drains the pipe.
  const ticks = await waitFor(async () => {
    const lines = (await readFile(logPath, 'utf8')).trim().split('\n');
    const n = lines.map((l) => /tick (\d+)$/.exec(l)?.[1]).filter((x): x is string => x !== undefined).map(Number);
    return n.length > 0 && n[n.length - 1]! >= 60 ? n : undefined;
  }, 15_000, 'ticks after restart');
  for (let i = 0; i < ticks.length; i++) assert.equal(ticks[i], i + 1, `tick ${i + 1} missing or out of order`);
  for (const line of (await readFile(logPath, 'utf8')).trim().split('\n')) {
    assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) stdout F tick \d+$/);
  }

  // The tty container kept running and writing through its terminal, and a resize after the restart reaches it.
  assert.equal((await containerStatus(tty)).state, 'CONTAINER_RUNNING');
  const { url } = await d.call<{ url: string }>('runtime', 'Attach', { container_id: tty, tty: true, stdout: true });
  const up = await spdyUpgrade(url, { protocols: ['v4.channel.k8s.io'] });
  assert.ok(isUpgrade(up));
  await up.conn.createStream({ streamtype: ['error'] });
  await up.conn.createStream({ streamtype: ['stdout'] });
  const resize = await up.conn.createStream({ streamtype: ['resize'] });
  resize.write(JSON.stringify({ Width: 150, Height: 50 }));
  await waitFor(async () => ((await readFile(ttyLog, 'utf8')).includes(' 50 150\r') ? true : undefined), 10_000, 'the resized terminal');
  up.socket.destroy();
  // (Until the first resize the terminal has no size, and stty says so on its line.)
  const ttyTicks = (await readFile(ttyLog, 'utf8')).trim().split('\n').map((l) => / stdout F tty (\d+) /.exec(l)?.[1]).filter((x): x is string => x !== undefined).map(Number);
  assert.ok(ttyTicks.length > 20, `only ${ttyTicks.length} tty ticks`);
  for (let i = 0; i < ttyTicks.length; i++) assert.equal(ttyTicks[i], i + 1, `tty tick ${i + 1} missing or out of order`);

  await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
  assert.deepEqual(await listPods(), []);
});

test('20 pods created and removed leave no netns, mount, runsc state or daemon fd behind', async () => {
  const fds = async (): Promise<number> => (await readdir(`/proc/${d.proc.pid}/fd`)).length;
  // A first pod warms up lazily opened descriptors (the events stream, log dirs); the count is taken after it.
  const warm = await runPod('warm');
  await runContainer(warm, 'warm', 'app', ['sleep', '3600']);
  await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: warm });
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: warm });
  const before = await fds();
  for (let batch = 0; batch < 4; batch++) {
    const pods = await Promise.all([0, 1, 2, 3, 4].map(async (i) => {
      const name = `many-${batch}-${i}`;
      const pod = await runPod(name);
      await runContainer(pod, name, 'app', ['sleep', '3600']);
      return pod;
    }));
    assert.equal((await listPods()).length, 5);
    // Their exits are awaited on each sandbox's control socket, with no runsc process per container.
    assert.deepEqual(await runscWaits(), []);
    await Promise.all(pods.map(async (pod) => {
      await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
      await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
    }));
  }
  assert.deepEqual(await listPods(), []);
  assert.deepEqual(await readdir(join(d.runDir, 'netns')).catch(() => []), []);
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  assert.equal(mounts.split('\n').filter((l) => l.includes(d.dir)).length, 0, 'no mount under the daemon dirs');
  assert.deepEqual(await runscStates(), []);
  assert.equal(await fds(), before, 'the daemon holds no more descriptors than before the 20 pods');
});
