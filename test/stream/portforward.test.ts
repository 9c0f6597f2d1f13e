import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { WebSocket } from 'ws';
import { SpdyConnection } from '../../stream/spdy/connection.js';
import { HostBackend } from '../helpers/stream-host-backend.js';
import { collect, isUpgrade, spdyForward, spdyUpgrade, wsUrl } from '../helpers/stream-client.js';
import { startTestServer } from '../helpers/stream-server.js';
import { eventually } from '../helpers/wait.js';

const PAYLOAD = randomBytes(5 * 1024 * 1024);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A loopback TCP server that sends PAYLOAD to each connection, or echoes when the client speaks first. */
async function payloadServer(t: TestContext): Promise<number> {
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined);
    sock.end(PAYLOAD);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

/** A port on loopback that nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function spdyPortForward(url: string): Promise<SpdyConnection> {
  const up = await spdyUpgrade(url, { protocols: ['portforward.k8s.io'] });
  if (!isUpgrade(up)) throw new Error(`port-forward upgrade failed: HTTP ${up.statusCode}: ${up.body}`);
  assert.equal(up.protocol, 'portforward.k8s.io');
  return up.conn;
}

async function downloadTwice(conn: SpdyConnection, port: number): Promise<void> {
  const [a, b] = await Promise.all([spdyForward(conn, port, 0), spdyForward(conn, port, 1)]);
  const [da, db, ea, eb] = await Promise.all([collect(a.data), collect(b.data), a.errorText, b.errorText]);
  assert.equal(ea, '');
  assert.equal(eb, '');
  assert.equal(da.length, PAYLOAD.length);
  assert.equal(sha(da), sha(PAYLOAD));
  assert.equal(sha(db), sha(PAYLOAD));
}

describe('port-forward over SPDY', () => {
  it('downloads 5 MiB intact on two connections at once', async (t) => {
    const backend = new HostBackend();
    const server = await startTestServer(t, backend);
    const port = await payloadServer(t);
    const conn = await spdyPortForward(server.getPortForwardUrl({ podSandboxId: 'pod1', ports: [] }));
    await downloadTwice(conn, port);
    assert.deepEqual(backend.forwards, [{ podSandboxId: 'pod1', port }, { podSandboxId: 'pod1', port }]);
    await conn.shutdown(2000);
  });

  it('reports a refused port on the error stream and keeps the session usable', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const refused = await closedPort();
    const good = await payloadServer(t);
    const conn = await spdyPortForward(server.getPortForwardUrl({ podSandboxId: 'pod1', ports: [] }));
    const f = await spdyForward(conn, refused, 0);
    const [text, data] = await Promise.all([f.errorText, collect(f.data)]);
    assert.match(text, new RegExp(`error forwarding port ${refused} to pod sandbox pod1: dialing 127.0.0.1:${refused}: .*ECONNREFUSED`));
    assert.equal(data.length, 0);
    const ok = await spdyForward(conn, good, 1);
    assert.equal(sha(await collect(ok.data)), sha(PAYLOAD));
    await conn.shutdown(2000);
  });

  it('resets streams with a bad port or type, and pairs by stream id without requestid', async (t) => {
    const server = await startTestServer(t, new HostBackend());
    const port = await payloadServer(t);
    const conn = await spdyPortForward(server.getPortForwardUrl({ podSandboxId: 'pod1', ports: [] }));
    await assert.rejects(conn.createStream({ streamtype: ['data'], port: ['0'] }), /reset \(status 5\)/);
    await assert.rejects(conn.createStream({ streamtype: ['stdin'], port: ['80'] }), /reset \(status 5\)/);
    const error = await conn.createStream({ streamtype: ['error'], port: [String(port)] });
    error.end();
    const data = await conn.createStream({ streamtype: ['data'], port: [String(port)] });
    assert.equal(sha(await collect(data)), sha(PAYLOAD));
    await conn.shutdown(2000);
  });

  it('closes an idle connection with GOAWAY, PINGs counting as traffic', async (t) => {
    const server = await startTestServer(t, new HostBackend(), { idleTimeoutMs: 400 });
    const conn = await spdyPortForward(server.getPortForwardUrl({ podSandboxId: 'pod1', ports: [] }));
    for (let i = 0; i < 5; i++) {
      await conn.ping();
      await new Promise((r) => setTimeout(r, 150));
    }
    assert.equal(conn.isClosed, false);
    const started = Date.now();
    await conn.closed;
    assert.ok(Date.now() - started < 2000);
  });

  it('writes a timeout on the error stream of an incomplete pair', async (t) => {
    const server = await startTestServer(t, new HostBackend(), { streamCreationTimeoutMs: 200 });
    const conn = await spdyPortForward(server.getPortForwardUrl({ podSandboxId: 'pod1', ports: [] }));
    const error = await conn.createStream({ streamtype: ['error'], port: ['80'], requestid: ['9'] });
    error.end();
    assert.equal((await collect(error)).toString(), 'timed out waiting for streams');
    await conn.shutdown(2000);
  });

  it('a connection whose upload ended while it held the socket back does not stall the others', async (t) => {
    // The pod side of the first connection reads nothing until the client has sent all 8 MiB and its end, so the
    // server holds the SPDY socket back for it; then it reads everything and stays open. A second connection
    // must still get through: an upload that ended is never read again, so it must not keep the socket held.
    let first: net.Socket | undefined;
    let received = 0;
    let ended = false;
    const target = net.createServer((sock) => {
      sock.on('error', () => undefined);
      if (first) return void sock.pipe(sock);
      first = sock;
      sock.pause();
      sock.on('data', (c: Buffer) => (received += c.length));
      sock.on('end', () => (ended = true));
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      first?.destroy();
      return new Promise<void>((resolve) => target.close(() => resolve()));
    });
    const port = (target.address() as net.AddressInfo).port;
    const server = await startTestServer(t, new HostBackend());
    const conn = await spdyPortForward(server.getPortForwardUrl({ podSandboxId: 'pod1', ports: [] }));
    const upload = randomBytes(8 * 1024 * 1024);
    const a = await spdyForward(conn, port, 0);
    await new Promise<void>((resolve) => a.data.end(upload, () => resolve()));
    await eventually(async () => first !== undefined, 10_000, 'the first connection to reach the pod side');
    first!.resume();
    await eventually(async () => ended && received === upload.length, 10_000, `the whole upload and its end at the pod side (${received} bytes so far)`);
    const b = await spdyForward(conn, port, 1);
    b.data.end(Buffer.from('ping'));
    assert.equal((await collect(b.data)).toString(), 'ping');
    first!.end();
    await conn.shutdown(2000);
  });

  it('accepts the tunnel subprotocol SPDY/3.1+portforward.k8s.io that crictl offers', async (t) => {
    // The ws client refuses to offer this non-token name, so the handshake is written by hand.
    const server = await startTestServer(t, new HostBackend());
    const url = new URL(server.getPortForwardUrl({ podSandboxId: 'pod1', ports: [] }));
    const head = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(Number(url.port), url.hostname, () => {
        sock.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n`
          + `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io\r\n\r\n`);
      });
      let text = '';
      sock.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (text.includes('\r\n\r\n')) { sock.destroy(); resolve(text); }
      });
      sock.on('error', reject);
    });
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.match(head, /\r\nSec-WebSocket-Protocol: SPDY\/3\.1\+portforward\.k8s\.io\r\n/i);
  });
});

describe('port-forward over WebSocket channels', () => {
  for (const protocol of ['v4.channel.k8s.io', 'v4.base64.channel.k8s.io']) {
    it(`downloads 5 MiB intact from two ports (${protocol}) and reports a refused one`, async (t) => {
      const server = await startTestServer(t, new HostBackend());
      const port = await payloadServer(t);
      const refused = await closedPort();
      const url = server.getPortForwardUrl({ podSandboxId: 'pod1', ports: [port, port, refused] });
      const ws = new WebSocket(wsUrl(url), [protocol]);
      const base64 = protocol.includes('base64');
      const channels = new Map<number, Buffer[]>();
      ws.on('message', (raw: Buffer, isBinary: boolean) => {
        const ch = base64 && !isBinary ? raw[0]! - 48 : raw[0]!;
        const data = base64 && !isBinary ? Buffer.from(raw.subarray(1).toString(), 'base64') : raw.subarray(1);
        channels.set(ch, [...(channels.get(ch) ?? []), data]);
      });
      await new Promise<void>((resolve, reject) => { ws.once('close', () => resolve()); ws.once('error', reject); });
      const got = (ch: number): Buffer => Buffer.concat(channels.get(ch) ?? []);
      const prefix = (p: number): Buffer => Buffer.from([p & 0xff, p >> 8]);
      for (const ch of [0, 2]) {
        const data = got(ch);
        assert.deepEqual(data.subarray(0, 2), prefix(port));
        assert.equal(sha(data.subarray(2)), sha(PAYLOAD));
      }
      assert.deepEqual(got(5).subarray(0, 2), prefix(refused));
      assert.match(got(5).subarray(2).toString(), /ECONNREFUSED/);
    });
  }
});
