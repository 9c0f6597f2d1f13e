// Exec and PortForward end to end: the real daemon over its socket returns a
// URL, and a client speaking SPDY/WebSocket runs against the pod behind it.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startDaemon, testConflist, type TestDaemon, removeAllPods } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { collect, exitCodeOf, isUpgrade, parseStatus, spdyExec, spdyForward, spdyUpgrade, wsExec } from '../helpers/stream-client.js';

const INDEX = 5;
let registry: TestRegistry;
let d: TestDaemon;
let image: string;
let pod: string;
let shell: string;

function podConfig(name: string) {
  return { metadata: { name, uid: `uid-${name}`, namespace: 'e2e', attempt: 0 }, hostname: name, log_directory: join(d.logDir, name), labels: { app: name } };
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
