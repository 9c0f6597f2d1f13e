// Exec and PortForward end to end: the real daemon over its socket returns a
// URL, and a client speaking SPDY/WebSocket runs against the pod behind it.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { join } from 'node:path';
import { startDaemon, testConflist, type TestDaemon, removeAllPods, waitFor } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { collect, exitCodeOf, isUpgrade, parseStatus, spdyExec, spdyForward, spdyUpgrade, wsExec } from '../helpers/stream-client.js';

const INDEX = 5;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let pod: string;
let shell: string;

function podConfig(name: string, extra: object = {}) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name), labels: { app: name }, ...extra };
}

async function runContainer(name: string, cmd: string[]): Promise<string> {
  const config = { metadata: { name, attempt: 0 }, image: { image }, command: cmd, log_path: `${name}.log` };
  const { container_id } = await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig('streams') });
  await d.call('runtime', 'StartContainer', { container_id });
  return container_id;
}

before(async () => {
  registry = await startRegistry();
  image = (await pushTestImage(registry.url, 'e2e/streams', {
    layers: [{ entries: busyboxEntries([...new Set([...BUSYBOX_APPLETS, 'seq'])]) }],
    config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
  })).ref;
  d = await startDaemon({ conflist: testConflist(INDEX) });
  await d.call('image', 'PullImage', { image: { image } });
  pod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('streams') })).pod_sandbox_id;
  shell = await runContainer('shell', ['sleep', '3600']);
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
});

async function execUrl(cmd: string[], o: { stdin?: boolean; stderr?: boolean } = {}): Promise<string> {
  const r = await d.call<{ url: string }>('runtime', 'Exec', { container_id: shell, cmd, stdin: o.stdin ?? false, stdout: true, stderr: o.stderr ?? true });
  return r.url;
}

test('Exec returns a loopback URL; exit code 7 arrives over SPDY and WebSocket', async () => {
  const url = await execUrl(['sh', '-c', 'echo hi; exit 7']);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]+$/);
  const r = await spdyExec(url, { stdout: true, stderr: true });
  assert.equal(exitCodeOf(parseStatus(r)), 7, r.status);
  assert.equal(r.stdout.toString(), 'hi\n');
  const ws = await wsExec(await execUrl(['sh', '-c', 'exit 7']), { stdout: true, stderr: true }, 'v4.channel.k8s.io');
  assert.equal(exitCodeOf(JSON.parse(ws.status)), 7, ws.status);
});

test('Exec cat round-trips 10 MiB of stdin and ends on stdin EOF', async () => {
  const data = randomBytes(10 * 1024 * 1024);
  const r = await spdyExec(await execUrl(['cat'], { stdin: true }), { stdin: data, stdout: true, stderr: true });
  assert.equal(parseStatus(r).status, 'Success', r.status);
  assert.ok(r.stdout.equals(data), `got ${r.stdout.length} bytes`);
});

test('Exec of an unknown container is NOT_FOUND over gRPC', async () => {
  await assert.rejects(d.call('runtime', 'Exec', { container_id: 'nope', cmd: ['true'], stdout: true }), { code: 5 });
});

test('PortForward relays HTTP from a pod; a closed port reports on the error stream', async () => {
  await runContainer('web', ['sh', '-c', 'mkdir -p /tmp/www && seq 1 2000 > /tmp/www/small && exec httpd -f -p 8080 -h /tmp/www']);
  const { url } = await d.call<{ url: string }>('runtime', 'PortForward', { pod_sandbox_id: pod, port: [8080] });
  assert.match(url, /\/portforward\//);
  const up = await spdyUpgrade(url, { protocols: ['portforward.k8s.io'] });
  assert.ok(isUpgrade(up));
  const expected = Array.from({ length: 2000 }, (_, i) => `${i + 1}\n`).join('');
  let resp = '';
  for (let attempt = 0; attempt < 50 && !resp.includes('200 OK'); attempt++) {
    // httpd may still be starting: a refused connection ends with an error, try again.
    const fwd = await spdyForward(up.conn, 8080, attempt);
    const got = collect(fwd.data);
    fwd.data.write('GET /small HTTP/1.0\r\n\r\n');
    const [data, err] = await Promise.all([got, fwd.errorText]);
    resp = data.toString();
    if (err) await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(resp, /200 OK/);
  assert.equal(resp.slice(resp.indexOf('\r\n\r\n') + 4), expected);
  const bad = await spdyForward(up.conn, 9, 1000);
  assert.match(await bad.errorText, /port 9.*refused/);
  await up.conn.shutdown(2000);
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The daemon's debug line for each forwarded connection to `port` of `podId`: which way it went. */
function forwardPaths(podId: string, port: number): string[] {
  return d.output().split('\n').filter((l) => l.includes('"port-forward connection"')).map((l) => JSON.parse(l) as { pod: string; port: number; path: string })
    .filter((l) => l.pod === podId && l.port === port).map((l) => l.path);
}

/** One forwarded connection on a fresh session: writes `send` (then half-closes) and collects what comes back until the pod closes. */
async function forwardOnce(podId: string, port: number, send: Buffer | string): Promise<{ data: Buffer; error: string }> {
  const { url } = await d.call<{ url: string }>('runtime', 'PortForward', { pod_sandbox_id: podId, port: [port] });
  const up = await spdyUpgrade(url, { protocols: ['portforward.k8s.io'] });
  assert.ok(isUpgrade(up));
  try {
    const fwd = await spdyForward(up.conn, port, 0);
    const got = collect(fwd.data);
    fwd.data.end(send);
    const [data, error] = await Promise.all([got, fwd.errorText]);
    return { data, error };
  } finally {
    await up.conn.shutdown(2000);
  }
}

/** HTTP/1.0 GET over a forward, retried while the server is still starting (refused). */
async function httpGet(podId: string, port: number, path: string): Promise<{ status: string; body: Buffer }> {
  return waitFor(async () => {
    const { data, error } = await forwardOnce(podId, port, `GET ${path} HTTP/1.0\r\n\r\n`);
    if (error) throw new Error(error);
    const end = data.indexOf('\r\n\r\n');
    return { status: data.subarray(0, data.indexOf('\r\n')).toString(), body: data.subarray(end + 4) };
  }, 20_000, `GET ${path} on port ${port}`);
}

test('PortForward to a wildcard listener goes straight to the pod IP; 8 MiB each way arrive intact', async () => {
  const count = 1_000_000;
  await runContainer('bulk', ['sh', '-c', `mkdir -p /tmp/bulk && seq 1 ${count} > /tmp/bulk/big && echo small > /tmp/bulk/small && exec httpd -f -p 8081 -h /tmp/bulk`]);
  await runContainer('echo', ['nc', '-ll', '-p', '8083', '-e', 'cat']);
  const down = await httpGet(pod, 8081, '/big');
  assert.match(down.status, /200/);
  const expected = Buffer.from(Array.from({ length: count }, (_, i) => `${i + 1}\n`).join(''));
  assert.equal(down.body.length, expected.length);
  assert.equal(sha(down.body), sha(expected));
  // Both directions at once: cat echoes every byte and closes after the client's EOF.
  const up = randomBytes(8 * 1024 * 1024);
  const echoed = await waitFor(async () => {
    const r = await forwardOnce(pod, 8083, up);
    return r.error ? undefined : r.data;
  }, 20_000, 'the echo server');
  assert.equal(echoed.length, up.length);
  assert.equal(sha(echoed), sha(up));
  // Attempts made while a server was still starting were refused at the pod IP and went to the relay, which may have
  // got through once the server listened; with both servers up, every new connection goes to the pod IP.
  for (const [port, send] of [[8081, 'GET /small HTTP/1.0\r\n\r\n'], [8083, 'ping']] as const) {
    const before = forwardPaths(pod, port).length;
    const r = await forwardOnce(pod, port, send);
    assert.equal(r.error, '');
    assert.ok(r.data.length > 0, `an answer on port ${port}`);
    const paths = await waitFor(async () => (forwardPaths(pod, port).length > before ? forwardPaths(pod, port).slice(before) : undefined), 5_000, `the daemon to log the path for port ${port}`);
    assert.deepEqual(paths, ['pod-ip']);
  }
});

test('PortForward to a loopback-only listener is relayed inside the sandbox', async () => {
  await runContainer('local', ['sh', '-c', 'mkdir -p /tmp/www && echo only-on-loopback > /tmp/www/x && exec httpd -f -p 127.0.0.1:8084 -h /tmp/www']);
  const r = await httpGet(pod, 8084, '/x');
  assert.match(r.status, /200/);
  assert.equal(r.body.toString(), 'only-on-loopback\n');
  await waitFor(async () => forwardPaths(pod, 8084).includes('relay'), 5_000, 'the daemon to log the relay path for port 8084');
  assert.ok(!forwardPaths(pod, 8084).includes('pod-ip'));
});

test('PortForward to a host-network pod reaches the node\'s loopback port', async () => {
  const node = net.createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => s.end(`node got ${Buffer.concat(chunks).toString()}`));
  });
  await new Promise<void>((resolve) => node.listen(0, '127.0.0.1', resolve));
  const port = (node.address() as net.AddressInfo).port;
  try {
    const hostPod = (await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig('hostnet', { linux: { security_context: { namespace_options: { network: 'NODE' } } } }) })).pod_sandbox_id;
    const r = await forwardOnce(hostPod, port, 'hello');
    assert.equal(r.error, '');
    assert.equal(r.data.toString(), 'node got hello');
    await waitFor(async () => forwardPaths(hostPod, port).includes('host'), 5_000, 'the daemon to log the host path');
  } finally {
    await new Promise((resolve) => node.close(resolve));
  }
});
