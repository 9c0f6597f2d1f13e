import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import { HostBackend } from '../helpers/stream-host-backend.js';
import { isUpgrade, spdyExec, spdyUpgrade, wsUrl, type HttpReply } from '../helpers/stream-client.js';
import { startTestServer } from '../helpers/stream-server.js';

const execReq = { containerId: 'c1', cmd: ['true'], tty: false, stdin: false, stdout: true, stderr: false };

async function reply(url: string, protocols: string[], headers?: Record<string, string>): Promise<HttpReply> {
  const r = await spdyUpgrade(url, { protocols, ...(headers ? { headers } : {}) });
  if (isUpgrade(r)) {
    r.socket.destroy();
    assert.fail(`expected an HTTP error, got 101 ${r.protocol}`);
  }
  return r;
}

function wsStatus(url: string, protocols: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(url), protocols);
    ws.on('unexpected-response', (_req, res) => { res.resume(); resolve(res.statusCode ?? 0); });
    ws.on('open', () => { ws.terminate(); resolve(101); });
    ws.on('error', reject);
  });
}

describe('streaming server handshake', () => {
  it('returns absolute URLs with scheme and validates requests', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const url = server.getExecUrl(execReq);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]+$/);
    assert.match(server.getAttachUrl({ containerId: 'c1', tty: true, stdin: true, stdout: true, stderr: false }), /\/attach\//);
    assert.match(server.getPortForwardUrl({ podSandboxId: 'p1', ports: [80] }), /\/portforward\//);
    const invalid = (e: unknown): boolean => e instanceof CriError && e.code === GrpcStatus.INVALID_ARGUMENT;
    assert.throws(() => server.getExecUrl({ ...execReq, containerId: '' }), invalid);
    assert.throws(() => server.getExecUrl({ ...execReq, stdout: false }), invalid);
    assert.throws(() => server.getExecUrl({ ...execReq, tty: true, stderr: true }), invalid);
    assert.throws(() => server.getExecUrl({ ...execReq, cmd: [] }), invalid);
    assert.throws(() => server.getPortForwardUrl({ podSandboxId: 'p1', ports: [0] }), invalid);
  });

  it('bounds pending URLs with RESOURCE_EXHAUSTED', async (t) => {
    const server = await startTestServer(t, new HostBackend(), { maxPendingRequests: 2 });
    server.getExecUrl(execReq);
    server.getExecUrl(execReq);
    assert.throws(() => server.getExecUrl(execReq), (e: unknown) => e instanceof CriError && e.code === GrpcStatus.RESOURCE_EXHAUSTED);
  });

  it('answers 400 without X-Stream-Protocol-Version, and the token is then spent', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const url = server.getExecUrl(execReq);
    assert.equal((await reply(url, [])).statusCode, 400);
    assert.equal((await reply(url, ['v4.channel.k8s.io'])).statusCode, 404);
  });

  it('answers 403 with the accepted list when no protocol is common', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const r = await reply(server.getExecUrl(execReq), ['v9.channel.k8s.io', 'portforward.k8s.io']);
    assert.equal(r.statusCode, 403);
    const accepted: string[] = [];
    for (let i = 0; i < r.rawHeaders.length; i += 2) if (r.rawHeaders[i]!.toLowerCase() === 'x-accepted-stream-protocol-versions') accepted.push(r.rawHeaders[i + 1]!);
    assert.deepEqual(accepted, ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io']);
    const pf = await reply(server.getPortForwardUrl({ podSandboxId: 'p', ports: [] }), ['v4.channel.k8s.io']);
    assert.equal(pf.statusCode, 403);
    assert.equal(pf.headers['x-accepted-stream-protocol-versions'], 'portforward.k8s.io');
  });

  it('answers 400 when the upgrade is not to SPDY/3.1', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    assert.equal((await reply(server.getExecUrl(execReq), ['v4.channel.k8s.io'], { Upgrade: 'h2c' })).statusCode, 400);
    // Without any Upgrade header Node routes it as a plain request: still 400.
    const plain = await new Promise<number>((resolve, reject) => {
      http.request(server.getExecUrl(execReq), { method: 'POST', headers: { 'X-Stream-Protocol-Version': 'v4.channel.k8s.io' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); })
        .on('error', reject).end();
    });
    assert.equal(plain, 400);
  });

  it('answers 404 for unknown, wrong-kind, reused and expired tokens', async (t) => {
    const server = await startTestServer(t, new HostBackend(), { tokenTtlMs: 150 });
    assert.equal((await reply(`${server.url}/exec/nosuchtoken`, ['v4.channel.k8s.io'])).statusCode, 404);
    assert.equal((await reply(`${server.url}/nothing/here`, ['v4.channel.k8s.io'])).statusCode, 404);
    const attachUrl = server.getAttachUrl({ containerId: 'c', tty: false, stdin: false, stdout: true, stderr: false });
    assert.equal((await reply(attachUrl.replace('/attach/', '/exec/'), ['v4.channel.k8s.io'])).statusCode, 404);
    const used = server.getExecUrl(execReq);
    const ok = await spdyExec(used, {});
    assert.equal(ok.status, '{"metadata":{},"status":"Success"}');
    assert.equal((await reply(used, ['v4.channel.k8s.io'])).statusCode, 404);
    const expired = server.getExecUrl(execReq);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await reply(expired, ['v4.channel.k8s.io'])).statusCode, 404);
    assert.equal(await wsStatus(server.getExecUrl(execReq).replace(/\/exec\/.*/, '/exec/bogus'), ['v4.channel.k8s.io']), 404);
  });

  it('negotiates in the client order, Node-joined header values included', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const r = await spdyUpgrade(server.getExecUrl(execReq), { protocols: ['v3.channel.k8s.io, v4.channel.k8s.io'] });
    assert.ok(isUpgrade(r));
    assert.equal(r.protocol, 'v3.channel.k8s.io');
    await r.conn.shutdown(500);
    const v5 = await spdyExec(server.getExecUrl(execReq), {}, ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
    assert.equal(v5.protocol, 'v4.channel.k8s.io');
  });

  it('answers 403 to a WebSocket offering only unknown protocols', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    assert.equal(await wsStatus(server.getExecUrl(execReq), ['v9.channel.k8s.io']), 403);
    assert.equal(await wsStatus(server.getExecUrl(execReq), ['v4.channel.k8s.io']), 101);
  });
});
