/**
 * The CRI server's HTTP/2 and gRPC handling, on a real unix socket with test
 * handlers: an independent stack (python3-grpcio, gRPC C core) for what a
 * real client does, and hand-built frames (test/helpers/raw-h2.ts) for what
 * only a byte-level client can do: tiny windows, CONTINUATION, padding,
 * unknown frames, resets, and malformed input.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { startCriServer, type CriHandlers } from '../../cri-api/server.js';
import { CriError } from '../../cri-api/errors.js';
import { silentLogger } from '../../cri-api/logger.js';
import { REPO_ROOT } from '../helpers/daemon.js';
import { eventually } from '../helpers/wait.js';
import {
  ACK,
  CONTINUATION,
  DATA,
  END_HEADERS,
  END_STREAM,
  GOAWAY,
  HEADERS,
  PADDED,
  PING,
  PREFACE,
  PRIORITY_FRAME,
  RST_STREAM,
  RawH2Connection,
  SETTINGS,
  WINDOW_UPDATE,
  criRequest,
  criResponse,
  frame,
  grpcMessage,
  grpcRequestBlock,
  hpack,
  settings,
  u32,
} from '../helpers/raw-h2.js';

const run = promisify(execFile);
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;

/** What the test handlers saw. */
const seen = { started: new Set<string>(), aborted: new Map<string, number>(), eventsSent: 0 };
/** What GetContainerEvents sends: `count` events of about `size` bytes, then ends (or, with `hold`, waits to be aborted). */
let events = { count: 200, size: 50_000, hold: false };
let releaseGate: () => void = () => undefined;
/** The record ContainerStatus answers from. */
const polled = { state: 'CONTAINER_RUNNING' as 'CONTAINER_RUNNING' | 'CONTAINER_EXITED', labels: { app: 'one' } as Record<string, string> };

const waitForAbort = (signal: AbortSignal, what: string): Promise<never> =>
  new Promise((_, reject) => {
    const onAbort = (): void => {
      seen.aborted.set(what, (signal.reason as CriError).code);
      reject(signal.reason as Error);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });

const handlers: CriHandlers = {
  Version: async (req) => ({ version: req.version, runtime_name: 'lean-test', runtime_version: '0', runtime_api_version: 'v1' }),
  Status: async () => {
    throw new CriError(grpc.status.NOT_FOUND, 'pod «ünïcødé» is 100% gone');
  },
  StopContainer: async (req, ctx) => {
    seen.started.add(req.container_id);
    return waitForAbort(ctx.signal, req.container_id);
  },
  // A polled RPC (its answers are memoized): the answer shares the record's objects, which change in place.
  ContainerStatus: async (req) => ({ status: { id: req.container_id, state: polled.state, labels: polled.labels } }),
  ExecSync: async (req) => ({ stdout: req.cmd[0] === 'too-large' ? Buffer.alloc(16 * 1024 * 1024 + 1) : Buffer.from(req.cmd[0] ?? ''), stderr: Buffer.alloc(0), exit_code: 0 }),
  RemoveContainer: async () => {
    await new Promise<void>((resolve) => (releaseGate = resolve));
    return {};
  },
  GetContainerEvents: async (_req, send, ctx) => {
    seen.eventsSent = 0;
    for (let i = 0; i < events.count; i++) {
      await send({ container_id: `${i}:${'e'.repeat(events.size)}` });
      seen.eventsSent++;
    }
    if (events.hold) await waitForAbort(ctx.signal, 'events');
  },
};

const dir = await mkdtemp(join(tmpdir(), 'gvcri-lean-server-'));
const socket = join(dir, 'cri.sock');
const server = await startCriServer(socket, handlers, silentLogger);
after(async () => {
  await server.shutdown(1000);
  await rm(dir, { recursive: true, force: true });
});

const VERSION = '/runtime.v1.RuntimeService/Version';
const EXEC_SYNC = '/runtime.v1.RuntimeService/ExecSync';
const EVENTS = '/runtime.v1.RuntimeService/GetContainerEvents';
/** A call's HEADERS and its message in DATA frames of at most 16384 bytes. */
function request(stream: number, path: string, body: Buffer): Buffer[] {
  const data = grpcMessage(body);
  const frames = [frame(HEADERS, END_HEADERS, stream, grpcRequestBlock(path, []))];
  for (let p = 0; p < data.length; p += 16384) frames.push(frame(DATA, p + 16384 >= data.length ? END_STREAM : 0, stream, data.subarray(p, p + 16384)));
  return frames;
}
const version = (stream: number, v = 'v1'): Buffer[] => request(stream, VERSION, criRequest('runtime', 'Version', { version: v }));
const dataBytes = (c: RawH2Connection, stream: number): number => c.frames.filter((f) => f.type === DATA && f.stream === stream).reduce((n, f) => n + f.payload.length, 0);

/** A PING round trip: the server handles frames in order, so what it would send for earlier frames is in by its ACK. */
async function sync(c: RawH2Connection): Promise<void> {
  const payload = randomBytes(8);
  c.send(frame(PING, 0, 0, payload));
  await c.waitFor(() => c.frames.some((f) => f.type === PING && f.flags & ACK && f.payload.equals(payload)), 'the PING ACK');
}

async function expectVersion(c: RawH2Connection, stream: number): Promise<void> {
  const r = await c.result(stream);
  assert.equal(r.status, 0, r.message);
  assert.equal(criResponse<{ runtime_name: string }>('runtime', 'Version', r.messages[0]!).runtime_name, 'lean-test');
}

test('python3-grpcio (C core): unary, error with a non-ASCII message, deadline and cancel abort the handler, 5 MiB each way, a slow stream reader, 100 concurrent calls', async () => {
  const stubs = await mkdtemp(join(tmpdir(), 'gvcri-pystubs-'));
  events = { count: 200, size: 50_000, hold: false };
  try {
    await run('/usr/bin/python3', ['-m', 'grpc_tools.protoc', `-I${join(REPO_ROOT, 'cri-api/proto')}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, 'api.proto']);
    const { stdout } = await run('/usr/bin/python3', [join(REPO_ROOT, 'test/cri-api/python_wire_client.py'), stubs, socket], { timeout: 300_000, maxBuffer: 1 << 20 });
    const out = JSON.parse(stdout) as Record<string, unknown>;
    assert.equal(out.version, 'lean-test');
    assert.deepEqual(out.status, ['NOT_FOUND', 'pod «ünïcødé» is 100% gone']);
    assert.equal((out.deadline as string[])[0], 'DEADLINE_EXCEEDED');
    assert.equal(seen.aborted.get('deadline'), grpc.status.DEADLINE_EXCEEDED);
    assert.equal(out.cancel, 'CANCELLED');
    await eventually(async () => seen.aborted.get('cancel'), 10_000, 'the cancelled handler to see its signal abort');
    assert.equal(seen.aborted.get('cancel'), grpc.status.CANCELLED);
    assert.deepEqual(out.big, [5 * 1024 * 1024 + 3, true]);
    const expectedTotal = Array.from({ length: 200 }, (_, i) => `${i}:`.length + 50_000).reduce((a, b) => a + b, 0);
    assert.deepEqual(out.events, [200, expectedTotal, true]);
    assert.equal(out.concurrent, 100);
  } finally {
    await rm(stubs, { recursive: true, force: true });
  }
});

test('a polled RPC answers every change, also of objects changed in place, and repeats unchanged answers byte for byte', async () => {
  const STATUS = '/runtime.v1.RuntimeService/ContainerStatus';
  const c = await RawH2Connection.open(socket);
  try {
    let stream = 1;
    const ask = async (id: string): Promise<Buffer> => {
      const s = stream;
      stream += 2;
      c.send(...request(s, STATUS, criRequest('runtime', 'ContainerStatus', { container_id: id })));
      const r = await c.result(s);
      assert.equal(r.status, 0, r.message);
      return r.messages[0]!;
    };
    const status = (m: Buffer): unknown => {
      const { id, state, labels } = criResponse<{ status: { id: string; state: string; labels: Record<string, string> } }>('runtime', 'ContainerStatus', m).status;
      return { id, state, labels };
    };
    const first = await ask('c1');
    assert.deepEqual(await ask('c1'), first);
    assert.deepEqual(status(await ask('c2')), { id: 'c2', state: 'CONTAINER_RUNNING', labels: { app: 'one' } });
    polled.labels.app = 'two';
    assert.deepEqual(status(await ask('c1')), { id: 'c1', state: 'CONTAINER_RUNNING', labels: { app: 'two' } });
    polled.state = 'CONTAINER_EXITED';
    assert.deepEqual(status(await ask('c1')), { id: 'c1', state: 'CONTAINER_EXITED', labels: { app: 'two' } });
  } finally {
    c.close();
  }
});

test('our SETTINGS come first; the client SETTINGS are ACKed; PING is answered with its own 8 bytes', async () => {
  const c = await RawH2Connection.open(socket);
  try {
    await sync(c);
    const first = c.frames[0]!;
    assert.equal(first.type, SETTINGS);
    assert.equal(first.flags & ACK, 0);
    assert.ok(c.frames.some((f) => f.type === SETTINGS && f.flags & ACK), c.describe());
    c.send(frame(PING, ACK, 0, Buffer.alloc(8)));
    await sync(c);
    assert.equal(c.frames.filter((f) => f.type === PING).length, 2, 'a PING ACK is not answered');
  } finally {
    c.close();
  }
});

test('a response never exceeds the client windows: INITIAL_WINDOW_SIZE 10, raised mid-stream, then WINDOW_UPDATEs; the connection window too', async () => {
  const c = await RawH2Connection.connect(socket);
  try {
    c.send(PREFACE, frame(SETTINGS, 0, 0, settings([[SETTINGS_INITIAL_WINDOW_SIZE, 10]])));
    const text = 'w'.repeat(100_000);
    c.send(...request(1, EXEC_SYNC, criRequest('runtime', 'ExecSync', { container_id: 'echo', cmd: [text] })));
    await c.waitFor(() => dataBytes(c, 1) === 10, '10 bytes of DATA');
    await sync(c);
    assert.equal(dataBytes(c, 1), 10);
    // Raising the initial window adds the difference to the open stream's window.
    c.send(frame(SETTINGS, 0, 0, settings([[SETTINGS_INITIAL_WINDOW_SIZE, 1000]])));
    await sync(c);
    assert.equal(dataBytes(c, 1), 1000);
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(500)));
    await sync(c);
    assert.equal(dataBytes(c, 1), 1500);
    // The stream may take it all now; the connection's 65535 bytes stop it.
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(1 << 20)));
    await sync(c);
    assert.equal(dataBytes(c, 1), 65535);
    assert.ok(!c.frames.some((f) => f.type === HEADERS && f.flags & END_STREAM), 'trailers wait for the data');
    c.send(frame(WINDOW_UPDATE, 0, 0, u32(1 << 20)));
    const r = await c.result(1);
    assert.equal(r.status, 0);
    assert.equal(Buffer.from(criResponse<{ stdout: Buffer }>('runtime', 'ExecSync', r.messages[0]!).stdout).toString(), text);
    assert.ok(c.frames.filter((f) => f.type === DATA).every((f) => f.payload.length <= 16384), 'DATA frames within the default SETTINGS_MAX_FRAME_SIZE');
  } finally {
    c.close();
  }
});

test('a larger SETTINGS_MAX_FRAME_SIZE lets DATA frames grow to it', async () => {
  const c = await RawH2Connection.connect(socket);
  try {
    c.send(PREFACE, frame(SETTINGS, 0, 0, settings([[SETTINGS_MAX_FRAME_SIZE, 40_000]])));
    c.send(...request(1, EXEC_SYNC, criRequest('runtime', 'ExecSync', { container_id: 'echo', cmd: ['m'.repeat(60_000)] })));
    const r = await c.result(1);
    assert.equal(r.status, 0);
    const sizes = c.frames.filter((f) => f.type === DATA).map((f) => f.payload.length);
    assert.equal(sizes.length, 2, String(sizes));
    assert.equal(sizes[0], 40_000);
  } finally {
    c.close();
  }
});

test('a streaming handler waits in send while the client window is shut: no more than one message is held', async () => {
  const c = await RawH2Connection.connect(socket);
  events = { count: 3, size: 1000, hold: false };
  try {
    c.send(PREFACE, frame(SETTINGS, 0, 0, settings([[SETTINGS_INITIAL_WINDOW_SIZE, 0]])));
    c.send(...request(1, EVENTS, criRequest('runtime', 'GetContainerEvents', {})));
    await c.waitFor(() => c.frames.some((f) => f.type === HEADERS && f.stream === 1), 'the response headers');
    await sync(c);
    assert.equal(seen.eventsSent, 0, 'the first send has not resolved');
    assert.equal(dataBytes(c, 1), 0);
    const one = 5 + criRequest('runtime', 'GetContainerEvents', {}).length + 1000 + 5;
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(one)));
    await c.waitFor(() => seen.eventsSent === 1, 'the first send to resolve');
    await sync(c);
    assert.equal(seen.eventsSent, 1, 'the second send waits for window');
    c.send(frame(WINDOW_UPDATE, 0, 1, u32(1 << 20)));
    const r = await c.result(1);
    assert.equal(r.status, 0);
    assert.equal(r.messages.length, 3);
    assert.equal(seen.eventsSent, 3);
  } finally {
    c.close();
  }
});

test('CONTINUATION, padded HEADERS and DATA, PRIORITY frames and unknown frame types are taken in stride', async () => {
  const c = await RawH2Connection.open(socket);
  try {
    const block = grpcRequestBlock(VERSION, [hpack.plain(1, hpack.string(socket))]);
    const half = Math.floor(block.length / 2);
    const body = grpcMessage(criRequest('runtime', 'Version', { version: 'padded' }));
    c.send(
      frame(0xfa, 0, 0, Buffer.from('unknown on stream 0')),
      frame(HEADERS, PADDED, 1, Buffer.concat([Buffer.from([3]), block.subarray(0, half), Buffer.alloc(3)])),
      frame(CONTINUATION, END_HEADERS, 1, block.subarray(half)),
      frame(PRIORITY_FRAME, 0, 1, Buffer.from([0, 0, 0, 0, 16])),
      frame(0xfb, 0xff, 1, Buffer.from('unknown on the stream')),
      frame(DATA, PADDED, 1, Buffer.concat([Buffer.from([10]), body.subarray(0, 4), Buffer.alloc(10)])),
      frame(DATA, END_STREAM | PADDED, 1, Buffer.concat([Buffer.from([0]), body.subarray(4)])),
    );
    const r = await c.result(1);
    assert.equal(r.status, 0, r.message);
    assert.equal(criResponse<{ version: string }>('runtime', 'Version', r.messages[0]!).version, 'padded');
  } finally {
    c.close();
  }
});

test('RST_STREAM mid-call aborts the handler as CANCELLED and nothing more is written on that stream', async () => {
  const c = await RawH2Connection.open(socket);
  try {
    c.send(...request(1, '/runtime.v1.RuntimeService/StopContainer', criRequest('runtime', 'StopContainer', { container_id: 'raw-reset' })));
    await eventually(async () => seen.started.has('raw-reset') || undefined, 10_000, 'the handler to start');
    c.send(frame(RST_STREAM, 0, 1, u32(0x8)));
    await eventually(async () => seen.aborted.get('raw-reset'), 10_000, 'the handler to be aborted');
    assert.equal(seen.aborted.get('raw-reset'), grpc.status.CANCELLED);
    c.send(...version(3));
    await expectVersion(c, 3);
    await sync(c);
    assert.deepEqual(c.frames.filter((f) => f.stream === 1), []);
  } finally {
    c.close();
  }
});

test('a deadline from grpc-timeout aborts the handler and answers DEADLINE_EXCEEDED', async () => {
  const c = await RawH2Connection.open(socket);
  try {
    const block = grpcRequestBlock('/runtime.v1.RuntimeService/StopContainer', [hpack.plain('grpc-timeout', hpack.string('200m'))]);
    c.send(frame(HEADERS, END_HEADERS, 1, block), frame(DATA, END_STREAM, 1, grpcMessage(criRequest('runtime', 'StopContainer', { container_id: 'raw-deadline' }))));
    const r = await c.result(1);
    assert.equal(r.status, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(seen.aborted.get('raw-deadline'), grpc.status.DEADLINE_EXCEEDED);
  } finally {
    c.close();
  }
});

/** A request header block from the given fields, in order, all plain literals. */
const block = (fields: [string, string][]): Buffer => Buffer.concat(fields.map(([n, v]) => hpack.plain(n, hpack.string(v))));
const GOOD: [string, string][] = [[':method', 'POST'], [':scheme', 'http'], [':path', VERSION], ['content-type', 'application/grpc'], ['te', 'trailers']];
const withField = (name: string, value: string | undefined): [string, string][] => {
  const rest = GOOD.filter(([n]) => n !== name);
  return value === undefined ? rest : [...rest, [name, value]];
};
const versionBody = grpcMessage(criRequest('runtime', 'Version', { version: 'v1' }));
const compressed = (() => {
  const gz = gzipSync(criRequest('runtime', 'Version', { version: 'gz' }));
  const m = grpcMessage(gz);
  m[0] = 1;
  return m;
})();
const tooLarge = Buffer.from([0, 0x01, 0, 0, 1]);

test('requests gRPC refuses get a trailers-only answer with the status and HTTP status grpc-go gives', async () => {
  const cases: { name: string; fields: [string, string][]; body?: Buffer; http: string; code: number; message?: RegExp }[] = [
    { name: 'GET', fields: withField(':method', 'GET'), http: '405', code: grpc.status.INTERNAL, message: /:method "GET" which should be POST/ },
    { name: 'json', fields: withField('content-type', 'application/json'), http: '415', code: grpc.status.INVALID_ARGUMENT, message: /content-type "application\/json"/ },
    { name: 'no content-type', fields: withField('content-type', undefined), http: '415', code: grpc.status.INVALID_ARGUMENT },
    { name: 'grpc+proto', fields: withField('content-type', 'application/grpc+proto'), http: '200', code: grpc.status.OK },
    { name: 'timeout of 11415 years', fields: withField('grpc-timeout', '99999999H'), http: '200', code: grpc.status.OK },
    { name: 'bad timeout', fields: withField('grpc-timeout', '18f6n'), http: '400', code: grpc.status.INTERNAL, message: /malformed grpc-timeout/ },
    { name: 'unknown service', fields: withField(':path', '/foo.Bar/Baz'), http: '200', code: grpc.status.UNIMPLEMENTED, message: /^unknown service foo\.Bar$/ },
    { name: 'unknown method', fields: withField(':path', '/runtime.v1.RuntimeService/Nope'), http: '200', code: grpc.status.UNIMPLEMENTED, message: /^unknown method Nope for service runtime\.v1\.RuntimeService$/ },
    { name: 'malformed path', fields: withField(':path', '/x'), http: '200', code: grpc.status.UNIMPLEMENTED, message: /malformed method name/ },
    { name: 'no handler', fields: withField(':path', '/runtime.v1.RuntimeService/CheckpointContainer'), http: '200', code: grpc.status.UNIMPLEMENTED, message: /^CheckpointContainer is not implemented yet$/ },
    { name: 'no message', fields: GOOD, body: Buffer.alloc(0), http: '200', code: grpc.status.INTERNAL, message: /received no request message/ },
    { name: 'two messages', fields: GOOD, body: Buffer.concat([versionBody, versionBody]), http: '200', code: grpc.status.INTERNAL, message: /multiple request messages/ },
    { name: 'not protobuf', fields: GOOD, body: grpcMessage(Buffer.from([0xff, 0xff, 0xff])), http: '200', code: grpc.status.INTERNAL, message: /^grpc: error unmarshalling request: / },
    { name: 'too large', fields: GOOD, body: tooLarge, http: '200', code: grpc.status.RESOURCE_EXHAUSTED, message: /larger than max/ },
    { name: 'gzip', fields: withField('grpc-encoding', 'gzip'), body: compressed, http: '200', code: grpc.status.OK },
    { name: 'snappy', fields: withField('grpc-encoding', 'snappy'), http: '200', code: grpc.status.UNIMPLEMENTED, message: /grpc-encoding "snappy"/ },
    { name: 'response too large', fields: withField(':path', EXEC_SYNC), body: grpcMessage(criRequest('runtime', 'ExecSync', { cmd: ['too-large'] })), http: '200', code: grpc.status.RESOURCE_EXHAUSTED, message: /trying to send message larger than max/ },
    { name: 'handler error', fields: withField(':path', '/runtime.v1.RuntimeService/Status'), body: grpcMessage(criRequest('runtime', 'Status', {})), http: '200', code: grpc.status.NOT_FOUND, message: /^pod «ünïcødé» is 100% gone$/ },
  ];
  const c = await RawH2Connection.open(socket);
  try {
    for (const [i, k] of cases.entries()) {
      const stream = 2 * i + 1;
      c.send(frame(HEADERS, END_HEADERS, stream, block(k.fields)), frame(DATA, END_STREAM, stream, k.body ?? versionBody));
      const r = await c.result(stream);
      const headers = c.frames.find((f) => f.type === HEADERS && f.stream === stream)!.headers!;
      assert.equal(headers.find((h) => h.name === ':status')?.value, k.http, k.name);
      assert.equal(r.status, k.code, `${k.name}: ${r.message}`);
      if (k.message) assert.match(r.message, k.message, k.name);
      if (k.name === 'gzip') assert.equal(criResponse<{ version: string }>('runtime', 'Version', r.messages[0]!).version, 'gz');
    }
    // HEADERS that end the stream: a call without its message.
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 97, block(GOOD)));
    const empty = await c.result(97);
    assert.equal(empty.status, grpc.status.INTERNAL);
    assert.match(empty.message, /received no request message/);
    // None of that hurt the connection.
    c.send(...version(99));
    await expectVersion(c, 99);
  } finally {
    c.close();
  }
});

test('malformed HTTP/2 ends that connection only, with a GOAWAY naming the error', async () => {
  const good = await RawH2Connection.open(socket);
  const bigBlock = (): Buffer[] => {
    const out = [frame(HEADERS, 0, 1, Buffer.alloc(16384, 0x82))];
    for (let i = 0; i < 16; i++) out.push(frame(CONTINUATION, 0, 1, Buffer.alloc(16384, 0x82)));
    return out;
  };
  const start = [PREFACE, frame(SETTINGS, 0, 0)];
  const cases: { name: string; bytes: Buffer[]; code: number; lastStream?: number }[] = [
    { name: 'bad preface', bytes: [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')], code: 0x1 },
    { name: 'first frame not SETTINGS', bytes: [PREFACE, frame(PING, 0, 0, Buffer.alloc(8))], code: 0x1 },
    { name: 'stream id going down', bytes: [...start, ...version(5), frame(HEADERS, END_HEADERS, 3, grpcRequestBlock(VERSION, []))], code: 0x1, lastStream: 5 },
    { name: 'even stream id', bytes: [...start, frame(HEADERS, END_HEADERS, 2, grpcRequestBlock(VERSION, []))], code: 0x1 },
    { name: 'frame over SETTINGS_MAX_FRAME_SIZE', bytes: [...start, frame(DATA, 0, 1, Buffer.alloc(16385))], code: 0x6 },
    { name: 'huge header block', bytes: [...start, ...bigBlock()], code: 0xb },
    { name: 'frame inside a header block', bytes: [...start, frame(HEADERS, 0, 1, hpack.indexed(3)), frame(PING, 0, 0, Buffer.alloc(8))], code: 0x1 },
    { name: 'DATA on an idle stream', bytes: [...start, frame(DATA, 0, 7, Buffer.alloc(3))], code: 0x1 },
    { name: 'WINDOW_UPDATE of 0 on the connection', bytes: [...start, frame(WINDOW_UPDATE, 0, 0, u32(0))], code: 0x1 },
    { name: 'PING of 7 bytes', bytes: [...start, frame(PING, 0, 0, Buffer.alloc(7))], code: 0x6 },
    { name: 'INITIAL_WINDOW_SIZE above 2^31-1', bytes: [PREFACE, frame(SETTINGS, 0, 0, settings([[SETTINGS_INITIAL_WINDOW_SIZE, 2 ** 31]]))], code: 0x3 },
    { name: 'MAX_FRAME_SIZE below 16384', bytes: [PREFACE, frame(SETTINGS, 0, 0, settings([[SETTINGS_MAX_FRAME_SIZE, 100]]))], code: 0x1 },
    { name: 'PUSH_PROMISE', bytes: [...start, frame(0x5, END_HEADERS, 1, Buffer.alloc(4))], code: 0x1 },
    { name: 'bad HPACK index', bytes: [...start, frame(HEADERS, END_HEADERS, 1, hpack.indexed(70))], code: 0x9 },
  ];
  try {
    for (const k of cases) {
      const c = await RawH2Connection.connect(socket);
      c.send(...k.bytes);
      await c.waitFor(() => c.closed, `the server to close the connection (${k.name})`);
      const g = c.goaway();
      assert.equal(g?.code, k.code, `${k.name}: ${c.describe()}`);
      assert.ok(g!.debug.length > 0, `${k.name}: the GOAWAY says why`);
      if (k.lastStream !== undefined) assert.equal(g!.lastStream, k.lastStream, k.name);
    }
    good.send(...version(1));
    await expectVersion(good, 1);
  } finally {
    good.close();
  }
});

test('a client GOAWAY: the connection ends once its last call is answered', async () => {
  const c = await RawH2Connection.open(socket);
  c.send(...version(1), frame(GOAWAY, 0, 0, Buffer.alloc(8)));
  await expectVersion(c, 1);
  await c.waitFor(() => c.closed, 'the server to close the connection');
});

test('shutdown: GOAWAY, open streams end UNAVAILABLE, an in-flight unary call is still answered, then the socket closes', async () => {
  const dir2 = await mkdtemp(join(tmpdir(), 'gvcri-lean-shutdown-'));
  const socket2 = join(dir2, 'cri.sock');
  const s2 = await startCriServer(socket2, handlers, silentLogger);
  events = { count: 1, size: 10, hold: true };
  const c = await RawH2Connection.open(socket2);
  try {
    c.send(...request(1, EVENTS, criRequest('runtime', 'GetContainerEvents', {})));
    c.send(...request(3, '/runtime.v1.RuntimeService/RemoveContainer', criRequest('runtime', 'RemoveContainer', { container_id: 'x' })));
    await c.waitFor(() => dataBytes(c, 1) > 0, 'the first event');
    await sync(c);
    const stopped = s2.shutdown(30_000);
    await c.waitFor(() => c.goaway() !== undefined, 'the GOAWAY');
    assert.equal(c.goaway()!.code, 0);
    assert.equal(c.goaway()!.lastStream, 3);
    assert.equal((await c.result(1)).status, grpc.status.UNAVAILABLE);
    assert.equal(c.closed, false, 'the unary call holds the connection open');
    releaseGate();
    assert.equal((await c.result(3)).status, 0);
    await stopped;
    await c.waitFor(() => c.closed, 'the connection to close');
  } finally {
    c.close();
    await rm(dir2, { recursive: true, force: true });
  }
});
