// The blob GET that reads into one kept buffer (image-store/bulk-http.ts),
// against plain servers on loopback: every body framing HTTP/1.1 has, a
// consumer that asks to wait, the stream reading of error bodies, and each
// way a download fails. Pulls over TLS, with auth and redirects run through
// it in pull, auth and redirects tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { bulkGet, type BulkRequest } from '../../image-store/bulk-http.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function request(o: Partial<BulkRequest> = {}): BulkRequest {
  return { headers: {}, idleTimeoutMs: 10_000, idleError: () => new Error('idle'), ...o };
}

async function listen(server: http.Server | Server): Promise<{ url: URL; close(): Promise<void> }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}/v2/blob`),
    close: () =>
      new Promise((r) => {
        if (server instanceof http.Server) server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A raw server: `respond` writes whatever bytes it likes on each connection. */
function rawServer(respond: (socket: Socket, request: string) => void): Server {
  return createServer((socket) => {
    let text = '';
    socket.on('data', (d) => {
      text += d.toString('latin1');
      if (text.includes('\r\n\r\n')) respond(socket, text);
    });
    socket.on('error', () => undefined);
  });
}

/** Drains the body; every third piece the consumer asks to wait a little, as a busy disk does. */
async function drainAll(body: Awaited<ReturnType<typeof bulkGet>>['body']): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let n = 0;
  await body.drain((piece) => {
    pieces.push(Buffer.from(piece));
    if (++n % 3 === 0) return new Promise((r) => setImmediate(r));
    return undefined;
  });
  return Buffer.concat(pieces);
}

test('a Content-Length body drains whole and in order, with the request as sent', async (t) => {
  const blob = randomBytes(3 * 1024 * 1024 + 17);
  const seen: http.IncomingHttpHeaders[] = [];
  const srv = await listen(
    http.createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { 'Content-Length': blob.length, 'Content-Type': 'application/octet-stream' }).end(blob);
    }),
  );
  t.after(() => srv.close());
  const res = await bulkGet(srv.url, request({ headers: { Authorization: 'Bearer abc', 'User-Agent': 'gvisor-cri' } }));
  assert.equal(res.status, 200);
  assert.equal(res.headers['content-length'], String(blob.length));
  assert.equal(res.headers['content-type'], 'application/octet-stream');
  assert.equal(sha(await drainAll(res.body)), sha(blob));
  assert.equal(seen[0]!.authorization, 'Bearer abc');
  assert.equal(seen[0]!.host, srv.url.host);
  assert.equal(seen[0]!.connection, 'close');
});

test('a chunked body and one that ends with the connection drain whole', async (t) => {
  const blob = randomBytes(600_000);
  const chunked = await listen(
    http.createServer((_req, res) => {
      res.writeHead(200);
      // Uneven chunks, so chunk boundaries fall anywhere within the reads.
      for (let at = 0; at < blob.length; at += 70_001) res.write(blob.subarray(at, at + 70_001));
      res.end();
    }),
  );
  t.after(() => chunked.close());
  const a = await bulkGet(chunked.url, request());
  assert.match(String(a.headers['transfer-encoding']), /chunked/);
  assert.equal(sha(await drainAll(a.body)), sha(blob));

  const untilClose = await listen(rawServer((s) => s.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n'), blob]))));
  t.after(() => untilClose.close());
  const b = await bulkGet(untilClose.url, request());
  assert.equal(sha(await drainAll(b.body)), sha(blob));
});

test('a head split across reads, after an interim 100, is read whole', async (t) => {
  const srv = await listen(
    rawServer((s) => {
      s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Le');
      setTimeout(() => s.end('ngth: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello'), 20);
    }),
  );
  t.after(() => srv.close());
  const res = await bulkGet(srv.url, request());
  assert.equal(res.status, 200);
  assert.equal(res.headers['x-a'], '1, 2');
  assert.equal((await drainAll(res.body)).toString(), 'hello');
});

test('an error body reads as a stream, and resume() discards one', async (t) => {
  const srv = await listen(
    http.createServer((req, res) => {
      res.writeHead(req.url === '/v2/blob' ? 404 : 401, { 'Content-Type': 'application/json', 'WWW-Authenticate': 'Bearer realm="x"' }).end('{"errors":[{"code":"BLOB_UNKNOWN"}]}');
    }),
  );
  t.after(() => srv.close());
  const res = await bulkGet(srv.url, request());
  assert.equal(res.status, 404);
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), '{"errors":[{"code":"BLOB_UNKNOWN"}]}');

  const other = await bulkGet(new URL('/v2/other', srv.url), request());
  assert.equal(other.status, 401);
  assert.equal(other.headers['www-authenticate'], 'Bearer realm="x"');
  other.body.resume();
  await new Promise<void>((r) => other.body.once('end', () => r()));
  await assert.rejects(other.body.drain(() => undefined), /already being read/);
});

test('a connection that closes before the body ended fails the drain', async (t) => {
  const srv = await listen(rawServer((s) => s.end(`HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(500)}`)));
  t.after(() => srv.close());
  const res = await bulkGet(srv.url, request());
  await assert.rejects(res.body.drain(() => undefined), (err: NodeJS.ErrnoException) => err.code === 'ECONNRESET' && /before the body ended/.test(err.message));
});

test('a consumer that throws, an idle connection and an abort each end the download', async (t) => {
  const blob = randomBytes(2 * 1024 * 1024);
  let stall: Socket | undefined;
  const srv = await listen(
    rawServer((s, req) => {
      if (req.startsWith('GET /v2/stall')) {
        stall = s;
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
      } else {
        s.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${blob.length}\r\n\r\n`), blob]));
      }
    }),
  );
  t.after(() => {
    stall?.destroy();
    return srv.close();
  });

  const res = await bulkGet(srv.url, request());
  const tooMuch = new Error('more than the manifest declares');
  let taken = 0;
  await assert.rejects(
    res.body.drain((piece) => {
      taken += piece.length;
      if (taken > 100_000) throw tooMuch;
    }),
    (err) => err === tooMuch,
  );

  const idle = await bulkGet(new URL('/v2/stall', srv.url), request({ idleTimeoutMs: 200, idleError: () => new Error('no data for 0.2 s') }));
  await assert.rejects(idle.body.drain(() => undefined), /no data for 0.2 s/);

  const controller = new AbortController();
  const aborted = await bulkGet(new URL('/v2/stall', srv.url), request({ signal: controller.signal }));
  const draining = aborted.body.drain(() => undefined);
  controller.abort(new Error('pull cancelled'));
  await assert.rejects(draining, /pull cancelled/);
  await assert.rejects(bulkGet(srv.url, request({ signal: controller.signal })), /pull cancelled/);
});

test('a header value that would smuggle in another header is refused before connecting', async () => {
  await assert.rejects(bulkGet(new URL('http://127.0.0.1:9/v2/blob'), request({ headers: { Authorization: 'Bearer a\r\nX-Evil: 1' } })), /invalid header "Authorization"/);
});

test('a refused connection and a server that is not HTTP fail with their cause', async (t) => {
  const closed = await listen(rawServer(() => undefined));
  const port = closed.url.port;
  await closed.close();
  await assert.rejects(bulkGet(new URL(`http://127.0.0.1:${port}/v2/blob`), request()), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');

  const garbage = await listen(rawServer((s) => s.end('SSH-2.0-OpenSSH\r\n\r\n')));
  t.after(() => garbage.close());
  await assert.rejects(bulkGet(garbage.url, request()), /not an HTTP\/1.1 response/);
});
