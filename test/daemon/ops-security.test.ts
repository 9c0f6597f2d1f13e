// Security-team items over the real daemon's socket: per-pod runsc flags
// only from the allow-list, the sandbox's tight defaults (no raw sockets, no
// host unix sockets, even for privileged containers), and a gVisor trace
// session whose events reach a receiver outside the sandbox.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { runCli, startDaemon, testConflist, type TestDaemon, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { connectUnixElf, startTraceReceiver, type TraceReceiver } from '../helpers/sandbox-probes.js';

const INDEX = 23;
const ECONNREFUSED = 111;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let work: string;
let receiver: TraceReceiver;
let hostSocketDir: string;
let hostServer: net.Server;
let hostConnections = 0;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'gvcri-sec-'));
  registry = await startRegistry();
  const entries = [...busyboxEntries([...BUSYBOX_APPLETS, 'ping']), { path: 'bin/connect-unix', content: connectUnixElf(), mode: 0o755 }];
  image = (await pushTestImage(registry.url, 'e2e/security', { layers: [{ entries }], config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] } })).ref;
  // A host service listening on a unix socket in a directory pods will mount.
  hostSocketDir = join(work, 'host-sockets');
  await mkdir(hostSocketDir);
  hostServer = net.createServer((c) => {
    hostConnections++;
    // The pod's probe hangs up at once: the reply may meet a closed socket.
    c.on('error', () => undefined);
    c.end('hello from the host\n');
  });
  await new Promise<void>((resolve) => hostServer.listen(join(hostSocketDir, 'svc.sock'), resolve));
  receiver = await startTraceReceiver(join(work, 'trace.sock'));
  const session = join(work, 'session.json');
  await writeFile(session, JSON.stringify({
    trace_session: {
      name: 'Default',
      points: [{ name: 'container/start' }, { name: 'sentry/execve' }, { name: 'sentry/task_exit' }],
      sinks: [{ name: 'remote', config: { endpoint: receiver.path } }],
    },
  }));
  d = await startDaemon({ conflist: testConflist(INDEX), args: ['--gvisor-flag-allowlist', 'net-raw host-uds', '--trace-session-config', session] });
  await d.call('image', 'PullImage', { image: { image } });
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  await receiver?.stop();
  if (hostServer) await new Promise((r) => hostServer.close(r));
  if (work) await rm(work, { recursive: true, force: true });
});

function podConfig(name: string, opts: { annotations?: Record<string, string>; privileged?: boolean } = {}) {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'security', attempt: 0 },
    hostname: name,
    log_directory: join(d.logDir, name),
    annotations: opts.annotations ?? {},
    linux: opts.privileged ? { security_context: { privileged: true } } : undefined,
  };
}

/** A running pod with one container (`command`, privileged if the pod is), mounting the host socket directory at /host. */
async function runPod(name: string, opts: { annotations?: Record<string, string>; privileged?: boolean; command?: string[] } = {}): Promise<{ pod: string; ctr: string }> {
  const config = podConfig(name, opts);
  const pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config })).pod_sandbox_id;
  const ctrConfig = {
    metadata: { name: 'app', attempt: 0 },
    image: { image },
    command: opts.command ?? ['sleep', '3600'],
    mounts: [{ container_path: '/host', host_path: hostSocketDir }],
    linux: opts.privileged ? { security_context: { privileged: true } } : undefined,
  };
  const ctr = (await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config: ctrConfig, sandbox_config: config })).container_id;
  await d.call('runtime', 'StartContainer', { container_id: ctr });
  return { pod, ctr };
}

async function removePod(pod: string): Promise<void> {
  await d.call('runtime', 'StopPodSandbox', { pod_sandbox_id: pod });
  await d.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: pod });
}

async function execSync(id: string, cmd: string[], timeout = 20): Promise<{ out: string; exit_code: number }> {
  const r = await d.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id: id, cmd, timeout });
  return { out: r.stdout.toString() + r.stderr.toString(), exit_code: r.exit_code };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(fn: () => Promise<T | undefined> | T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('a dev.gvisor.flag annotation not on the allow-list is refused with INVALID_ARGUMENT, and nothing is left behind', async () => {
  const err = await d.call('runtime', 'RunPodSandbox', { config: podConfig('refused', { annotations: { 'dev.gvisor.flag.strace': 'true' } }) }).then(
    () => assert.fail('RunPodSandbox accepted a flag that is not on the allow-list'),
    (e: grpc.ServiceError) => e,
  );
  assert.equal(err.code, 3, 'INVALID_ARGUMENT');
  assert.match(err.details, /annotation dev\.gvisor\.flag\.strace: runsc flag not on this node's allow-list \(allowed flags: net-raw, host-uds\)/);
  assert.match(err.details, /gvisor-flag-allowlist/);
  const pods = await d.call<{ items: unknown[] }>('runtime', 'ListPodSandbox', {});
  assert.deepEqual(pods.items, []);
  assert.deepEqual(await readdir(join(d.runDir, 'netns')).catch(() => []), [], 'no network namespace was made');
  assert.deepEqual(await readdir(join(d.stateDir, 'pods')).catch(() => []), [], 'no pod record was written');
});

test('by default a pod has no raw sockets, even privileged, in its container and in exec', async () => {
  const { pod, ctr } = await runPod('no-raw', { privileged: true, command: ['sh', '-c', 'ping -c1 127.0.0.1 > /tmp/ping.out 2>&1; echo "rc=$?" >> /tmp/ping.out; sleep 3600'] });
  try {
    const init = await eventually(async () => {
      const r = await execSync(ctr, ['cat', '/tmp/ping.out']);
      return /rc=\d+/.test(r.out) ? r.out : undefined;
    }, 20_000, 'the container\'s ping to finish');
    assert.match(init, /permission denied/);
    assert.match(init, /rc=1/);
    const exec = await execSync(ctr, ['ping', '-c1', '127.0.0.1']);
    assert.notEqual(exec.exit_code, 0);
    assert.match(exec.out, /permission denied/);
  } finally {
    await removePod(pod);
  }
});

test('an allowed flag takes effect on that pod only: dev.gvisor.flag.net-raw=true lets its containers and execs ping', async () => {
  const { pod, ctr } = await runPod('raw-ok', { annotations: { 'dev.gvisor.flag.net-raw': 'true' }, command: ['sh', '-c', 'ping -c1 127.0.0.1 > /tmp/ping.out 2>&1; echo "rc=$?" >> /tmp/ping.out; sleep 3600'] });
  try {
    const init = await eventually(async () => {
      const r = await execSync(ctr, ['cat', '/tmp/ping.out']);
      return /rc=\d+/.test(r.out) ? r.out : undefined;
    }, 20_000, 'the container\'s ping to finish');
    assert.match(init, /1 packets received/);
    assert.match(init, /rc=0/);
    const exec = await execSync(ctr, ['ping', '-c1', '127.0.0.1']);
    assert.equal(exec.exit_code, 0, exec.out);
    const status = await d.call<{ status: { annotations: Record<string, string> } }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: pod });
    assert.equal(status.status.annotations['dev.gvisor.flag.net-raw'], 'true');
  } finally {
    await removePod(pod);
  }
});

test('a host unix socket in a hostPath mount cannot be connected to from a pod, even privileged, unless host-uds is allowed for it', async () => {
  // The probe program itself works: on the host it connects.
  const probe = join(work, 'connect-unix');
  await writeFile(probe, connectUnixElf());
  await chmod(probe, 0o755);
  await promisify(execFile)(probe, [join(hostSocketDir, 'svc.sock')]);
  assert.equal(hostConnections, 1);

  const { pod, ctr } = await runPod('no-uds', { privileged: true });
  try {
    const ls = await execSync(ctr, ['ls', '-l', '/host/svc.sock']);
    assert.equal(ls.exit_code, 0, `the socket is visible in the mount: ${ls.out}`);
    const r = await execSync(ctr, ['connect-unix', '/host/svc.sock']);
    assert.equal(r.exit_code, ECONNREFUSED, `connect from the pod must be refused, got exit ${r.exit_code}`);
    assert.equal(hostConnections, 1, 'the host service saw no connection from the pod');
  } finally {
    await removePod(pod);
  }

  // The operator allowed host-uds: a pod asking for it reaches the socket (what loosening costs).
  const open = await runPod('uds-open', { annotations: { 'dev.gvisor.flag.host-uds': 'open' } });
  try {
    const r = await execSync(open.ctr, ['connect-unix', '/host/svc.sock']);
    assert.equal(r.exit_code, 0, `with host-uds=open the connect succeeds, got exit ${r.exit_code}`);
    await eventually(() => (hostConnections === 2 ? true : undefined), 5000, 'the host service to see the pod');
  } finally {
    await removePod(open.pod);
  }
});

test('every new sandbox starts with the trace session: process events reach the receiver, and verbose status shows the session', async () => {
  const marker = `trace-marker-${process.pid}`;
  const connectionsBefore = receiver.connections();
  const { pod, ctr } = await runPod('traced', { command: ['sh', '-c', `/bin/busybox echo ${marker}; sleep 3600`] });
  try {
    assert.ok(receiver.connections() > connectionsBefore, 'the sandbox connected to the sink when it started');
    const execve = await eventually(() => receiver.messages().find((m) => m.type === 3 && m.payload.includes(marker)), 20_000, 'the execve event of the container\'s command').catch((err: Error) => {
      throw new Error(`${err.message}; received: ${JSON.stringify(receiver.messages().map((m) => [m.type, m.payload.toString('latin1').replace(/[^ -~]/g, '.')]))}`);
    });
    assert.ok(execve.payload.includes('/bin/busybox'));
    assert.ok(receiver.messages().some((m) => m.type === 1 && m.payload.includes(ctr)), 'a container/start event names the container');
    const status = await d.call<{ info: Record<string, string> }>('runtime', 'PodSandboxStatus', { pod_sandbox_id: pod, verbose: true });
    const info = JSON.parse(status.info.info!) as { traceSessions: { name: string; sinks: { name: string; dropped: number }[] }[] };
    assert.deepEqual(info.traceSessions, [{ name: 'Default', sinks: [{ name: 'remote', dropped: 0 }] }]);
  } finally {
    await removePod(pod);
  }
});

test('a daemon whose trace session file is broken does not start, and says which file and why', async () => {
  const dir = join(work, 'bad-daemon');
  await mkdir(dir);
  const bad = join(dir, 'session.json');
  await writeFile(bad, '{"trace_session": {"name": "x",');
  await writeFile(join(dir, 'config.toml'), '');
  const r = await runCli(['--config', join(dir, 'config.toml'), '--socket', join(dir, 'sock'), '--state-dir', join(dir, 'state'), '--run-dir', join(dir, 'run'), '--audit-log', '', '--trace-session-config', bad], 60_000);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`trace-session-config ${bad}: not JSON`));
});
