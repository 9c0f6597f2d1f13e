/**
 * The CRI socket serves every client whatever `:authority` it sends: grpc-go
 * clients up to kubelet 1.30 / crictl 1.31 send the socket path (Node's own
 * HTTP/2 layer reset those; our server takes any). Checked at the wire with a
 * Node http2 client, hand-built frames and HPACK blocks, the bytes crictl
 * 1.26.1 really sent, and an independent gRPC stack (python3-grpcio, C core).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { connect } from 'node:net';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, removeAllPods, startDaemon, testConflist } from '../helpers/daemon.js';
import {
  CONTINUATION,
  DATA,
  END_HEADERS,
  END_STREAM,
  HEADERS,
  PADDED,
  PRIORITY,
  RST_STREAM,
  RawH2Connection,
  criRequest,
  criResponse,
  frame,
  grpcMessage,
  grpcRequestBlock,
  hpack,
} from '../helpers/raw-h2.js';

const run = promisify(execFile);
const d = await startDaemon({ conflist: testConflist(13) });
after(async () => {
  await removeAllPods(d);
  await d.cleanup();
});

const VERSION = '/runtime.v1.RuntimeService/Version';
const versionCall = (stream: number): Buffer => frame(DATA, END_STREAM, stream, grpcMessage(criRequest('runtime', 'Version', { version: 'v1' })));
const runtimeName = (message: Buffer | undefined): string => criResponse<{ runtime_name: string }>('runtime', 'Version', message!).runtime_name;
/** RFC 7541 Huffman code of "/tmp/x.sock". */
const HUFFMAN_TMP_X_SOCK = Buffer.from('6134d6c795d07275', 'hex');

/** One gRPC call over a Node http2 session; resolves with grpc-status and the response messages. */
function h2Call(session: http2.ClientHttp2Session, path: string, body: Buffer, authority: string): Promise<{ status: string; messages: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, ':scheme': 'http', ':authority': authority, 'content-type': 'application/grpc', te: 'trailers' });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('trailers', (t) => {
      const data = Buffer.concat(chunks);
      const messages: Buffer[] = [];
      for (let p = 0; p + 5 <= data.length; p += 5 + data.readUInt32BE(p + 1)) messages.push(data.subarray(p + 5, p + 5 + data.readUInt32BE(p + 1)));
      resolve({ status: String(t['grpc-status']), messages });
    });
    req.on('error', reject);
    req.on('close', () => {
      if (req.rstCode) reject(new Error(`stream reset with code ${req.rstCode}`));
    });
    req.end(grpcMessage(body));
  });
}

test('a Node http2 client sending the socket path as :authority: Version, server-streaming lists, 200 calls on one connection', async () => {
  const session = http2.connect('http://localhost', { createConnection: () => connect(d.socket) });
  try {
    const v = await h2Call(session, VERSION, criRequest('runtime', 'Version', { version: 'v1' }), d.socket);
    assert.equal(v.status, '0');
    assert.equal(runtimeName(v.messages[0]), 'gvisor-cri');

    for (const [path, service, rpc] of [
      ['/runtime.v1.RuntimeService/StreamPodSandboxes', 'runtime', 'StreamPodSandboxes'],
      ['/runtime.v1.ImageService/StreamImages', 'image', 'StreamImages'],
    ] as const) {
      const r = await h2Call(session, path, criRequest(service, rpc, {}), d.socket);
      assert.equal(r.status, '0', path);
    }

    const viaGrpcJs = await d.call<{ items: unknown[] }>('runtime', 'ListPodSandbox', {});
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        i % 2 === 0
          ? h2Call(session, VERSION, criRequest('runtime', 'Version', { version: 'v1' }), d.socket)
          : h2Call(session, '/runtime.v1.RuntimeService/ListPodSandbox', criRequest('runtime', 'ListPodSandbox', {}), d.socket),
      ),
    );
    assert.deepEqual(new Set(answers.map((a) => a.status)), new Set(['0']));
    assert.deepEqual(criResponse('runtime', 'ListPodSandbox', answers[1]!.messages[0]!), viaGrpcJs);
  } finally {
    session.close();
  }
});

/** The recorded bytes up to and without the RST_STREAM that cancelled stream 1. */
function withoutReset(bytes: Buffer): Buffer {
  const parts: Buffer[] = [bytes.subarray(0, 24)];
  for (let p = 24; p < bytes.length; ) {
    const end = p + 9 + bytes.readUIntBE(p, 3);
    if (bytes[p + 3] !== RST_STREAM) parts.push(bytes.subarray(p, end));
    p = end;
  }
  return Buffer.concat(parts);
}

test('crictl 1.26.1 (grpc-go) as recorded: both calls of each connection answered, the second through dynamic-table references', async () => {
  const expected: Record<string, [string, string][]> = {
    version: [['runtime', 'Version'], ['runtime', 'Version']],
    pods: [['runtime', 'Version'], ['runtime', 'ListPodSandbox']],
    images: [['image', 'ImageFsInfo'], ['image', 'ListImages']],
  };
  for (const [name, calls] of Object.entries(expected)) {
    const bytes = await readFile(join(REPO_ROOT, `test/fixtures/grpc-go-uds/crictl-1.26.1-${name}.bin`));
    const c = await RawH2Connection.connect(d.socket);
    try {
      c.send(withoutReset(bytes));
      for (const [i, [service, rpc]] of calls.entries()) {
        const r = await c.result(2 * i + 1);
        assert.equal(r.status, 0, `${name} stream ${2 * i + 1}: ${r.message}`);
        const res = criResponse<Record<string, unknown>>(service as 'runtime' | 'image', rpc, r.messages[0]!);
        if (rpc === 'Version') assert.equal(res.runtime_name, 'gvisor-cri');
      }
    } finally {
      c.close();
    }
  }
});

test('hand-built HPACK: a Huffman path authority with incremental indexing, then an indexed reference, then a table size update', async () => {
  const c = await RawH2Connection.open(d.socket);
  try {
    // Indexed name (:authority is static entry 1) with a Huffman value; it becomes dynamic entry 62.
    c.send(frame(HEADERS, END_HEADERS, 1, grpcRequestBlock(VERSION, [hpack.incremental(1, hpack.string(HUFFMAN_TMP_X_SOCK, true))])), versionCall(1));
    assert.equal(runtimeName((await c.result(1)).messages[0]), 'gvisor-cri');
    c.send(frame(HEADERS, END_HEADERS, 3, grpcRequestBlock(VERSION, [hpack.indexed(62)])), versionCall(3));
    assert.equal((await c.result(3)).status, 0);
    // Shrinking the table to 0 and back empties it; a never-indexed literal path authority then works too.
    const block = Buffer.concat([hpack.sizeUpdate(0), hpack.sizeUpdate(4096), grpcRequestBlock(VERSION, [hpack.plain(1, hpack.string('/run/a.sock'), true)])]);
    c.send(frame(HEADERS, END_HEADERS, 5, block), versionCall(5));
    assert.equal((await c.result(5)).status, 0);
  } finally {
    c.close();
  }
});

test('a header block split across HEADERS and CONTINUATION frames, with PADDED and PRIORITY flags', async () => {
  const c = await RawH2Connection.open(d.socket);
  try {
    const block = grpcRequestBlock(VERSION, [hpack.incremental(1, hpack.string('/run/gvisor-cri/gvisor-cri.sock'))]);
    const third = Math.floor(block.length / 3);
    const padding = Buffer.alloc(7);
    const priority = Buffer.from([0, 0, 0, 0, 15]);
    c.send(
      frame(HEADERS, PADDED | PRIORITY, 1, Buffer.concat([Buffer.from([padding.length]), priority, block.subarray(0, third), padding])),
      frame(CONTINUATION, 0, 1, block.subarray(third, 2 * third)),
      frame(CONTINUATION, END_HEADERS, 1, block.subarray(2 * third)),
      versionCall(1),
    );
    assert.equal(runtimeName((await c.result(1)).messages[0]), 'gvisor-cri');
    // The split block's indexed entry is in the table for the next request.
    c.send(frame(HEADERS, END_HEADERS, 3, grpcRequestBlock(VERSION, [hpack.indexed(62)])), versionCall(3));
    assert.equal((await c.result(3)).status, 0);
  } finally {
    c.close();
  }
});

test('localhost and a path authority on one connection, both through dynamic-table references that shift as entries are added', async () => {
  const c = await RawH2Connection.open(d.socket);
  try {
    // localhost becomes dynamic entry 62, then the path pushes it to 63: the last call names it by that index.
    c.send(frame(HEADERS, END_HEADERS, 1, grpcRequestBlock(VERSION, [hpack.incremental(1, hpack.string('localhost'))])), versionCall(1));
    c.send(frame(HEADERS, END_HEADERS, 3, grpcRequestBlock(VERSION, [hpack.indexed(62)])), versionCall(3));
    c.send(frame(HEADERS, END_HEADERS, 5, grpcRequestBlock(VERSION, [hpack.incremental(1, hpack.string(d.socket))])), versionCall(5));
    c.send(frame(HEADERS, END_HEADERS, 7, grpcRequestBlock(VERSION, [hpack.indexed(63)])), versionCall(7));
    c.send(frame(HEADERS, END_HEADERS, 9, grpcRequestBlock(VERSION, [hpack.indexed(62)])), versionCall(9));
    for (const stream of [1, 3, 5, 7, 9]) assert.equal(runtimeName((await c.result(stream)).messages[0]), 'gvisor-cri', `stream ${stream}`);
  } finally {
    c.close();
  }
});

test('no :authority, an empty one, a percent-encoded path and localhost are all served', async () => {
  const c = await RawH2Connection.open(d.socket);
  try {
    const authorities = [[], [hpack.plain(1, hpack.string(''))], [hpack.plain(1, hpack.string('run%2Fgvisor-cri.sock'))], [hpack.plain(1, hpack.string('localhost'))]];
    authorities.forEach((a, i) => c.send(frame(HEADERS, END_HEADERS, 2 * i + 1, grpcRequestBlock(VERSION, a)), versionCall(2 * i + 1)));
    for (let i = 0; i < authorities.length; i++) assert.equal((await c.result(2 * i + 1)).status, 0, `authority case ${i}`);
  } finally {
    c.close();
  }
});

test('garbage or a malformed header block ends only that connection; other clients keep working', async () => {
  const good = await RawH2Connection.open(d.socket);
  try {
    good.send(frame(HEADERS, END_HEADERS, 1, grpcRequestBlock(VERSION, [hpack.plain(1, hpack.string(d.socket))])), versionCall(1));
    assert.equal((await good.result(1)).status, 0);

    const garbage = await RawH2Connection.open(d.socket);
    garbage.send(Buffer.from('this is not HTTP/2 at all, just bytes after the preface'));
    await garbage.waitFor(() => garbage.closed, 'the server to close the garbage connection');
    assert.ok(garbage.goaway() && garbage.goaway()!.code !== 0, garbage.describe());

    // A reference past the dynamic table: a COMPRESSION_ERROR for the whole connection.
    const badIndex = await RawH2Connection.open(d.socket);
    badIndex.send(frame(HEADERS, END_HEADERS, 1, grpcRequestBlock(VERSION, [hpack.indexed(70)])), versionCall(1));
    await badIndex.waitFor(() => badIndex.closed, 'the server to close the connection with the bad index');
    assert.equal(badIndex.goaway()?.code, 0x9, badIndex.describe());

    // A CONTINUATION with no open block, after one good call: PROTOCOL_ERROR naming that call as the last stream.
    const stray = await RawH2Connection.open(d.socket);
    stray.send(frame(HEADERS, END_HEADERS, 1, grpcRequestBlock(VERSION, [])), versionCall(1));
    assert.equal((await stray.result(1)).status, 0);
    stray.send(frame(CONTINUATION, END_HEADERS, 3, hpack.indexed(2)));
    await stray.waitFor(() => stray.closed, 'the server to close the connection with a stray CONTINUATION');
    assert.equal(stray.goaway()?.code, 0x1, stray.describe());
    assert.equal(stray.goaway()?.lastStream, 1);

    good.send(frame(HEADERS, END_HEADERS, 3, grpcRequestBlock(VERSION, [hpack.plain(1, hpack.string(d.socket))])), versionCall(3));
    assert.equal((await good.result(3)).status, 0);
    assert.equal(good.closed, false);
    const v = await d.call<{ runtime_name: string }>('runtime', 'Version', {});
    assert.equal(v.runtime_name, 'gvisor-cri');
    assert.equal(d.proc.exitCode, null);
  } finally {
    good.close();
  }
});

test('python3-grpcio (gRPC C core), with its own authority and with the socket path: Version, RunPodSandbox, ListContainers', async () => {
  const stubs = await mkdtemp(join(tmpdir(), 'gvcri-pystubs-'));
  try {
    // Debian's python3, where python3-grpcio and python3-grpc-tools are installed.
    await run('/usr/bin/python3', ['-m', 'grpc_tools.protoc', `-I${join(REPO_ROOT, 'cri-api/proto')}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, 'api.proto']);
    const { stdout } = await run('/usr/bin/python3', [join(REPO_ROOT, 'test/helpers/cri_python_client.py'), stubs, d.socket, join(d.logDir, 'py-pod')], { timeout: 300_000 });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    assert.deepEqual(out.version_default, { runtime_name: 'gvisor-cri', runtime_api_version: 'v1' });
    assert.deepEqual(out.version_path, { runtime_name: 'gvisor-cri', runtime_api_version: 'v1' });
    assert.match(String(out.pod_id), /^[0-9a-f]{64}$/);
    assert.equal(out.pod_state, 'SANDBOX_READY');
    assert.match(String(out.pod_ip), /^10\.\d+\.\d+\.\d+$/);
    assert.deepEqual(out.containers, []);
    assert.equal(out.missing_container, 'NOT_FOUND');
    assert.deepEqual(out.pods_after, []);
  } finally {
    await rm(stubs, { recursive: true, force: true });
  }
});
