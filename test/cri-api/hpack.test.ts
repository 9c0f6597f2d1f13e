import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeHeaders, HpackDecoder, HpackError, type HeaderField } from '../../cri-api/hpack.js';
import { huffmanDecode, HuffmanError } from '../../cri-api/hpack-huffman.js';
import { ConnectionError, InboundRewriter, acceptableAuthority, rewriteAuthority } from '../../cri-api/authority-filter.js';
import { REPO_ROOT } from '../helpers/daemon.js';
import { CONTINUATION, END_HEADERS, HEADERS, PREFACE, SETTINGS, frame, grpcRequestBlock, hpack } from '../helpers/raw-h2.js';

const pairs = (fields: HeaderField[]): string[][] => fields.map((f) => [f.name, f.value]);
const request = (authority: string, scheme = 'http', path = '/'): string[][] => [[':method', 'GET'], [':scheme', scheme], [':path', path], [':authority', authority]];

// RFC 7541 Appendix C.3 (plain literals) and C.4 (Huffman): three requests on one connection.
const C3 = ['828684410f7777772e6578616d706c652e636f6d', '828684be58086e6f2d6361636865', '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565'];
const C4 = ['828684418cf1e3c2e5f23a6ba0ab90f4ff', '828684be5886a8eb10649cbf', '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf'];

for (const [name, blocks] of [['C.3 plain', C3], ['C.4 Huffman', C4]] as const) {
  test(`RFC 7541 ${name} request sequence decodes with its dynamic table`, () => {
    const d = new HpackDecoder();
    assert.deepEqual(pairs(d.decode(Buffer.from(blocks[0], 'hex'))), request('www.example.com'));
    assert.deepEqual(pairs(d.decode(Buffer.from(blocks[1], 'hex'))), [...request('www.example.com'), ['cache-control', 'no-cache']]);
    assert.deepEqual(pairs(d.decode(Buffer.from(blocks[2], 'hex'))), [...request('www.example.com', 'https', '/index.html'), ['custom-key', 'custom-value']]);
  });
}

test('Huffman: EOS, a code longer than the table and padding that is not all ones are refused', () => {
  assert.equal(huffmanDecode(Buffer.from('f1e3c2e5f23a6ba0ab90f4ff', 'hex')).toString(), 'www.example.com');
  assert.throws(() => huffmanDecode(Buffer.from('ffffffff', 'hex')), HuffmanError);
  // "0" is 00000: padding of zeros instead of ones.
  assert.throws(() => huffmanDecode(Buffer.from([0x00])), HuffmanError);
  // A whole byte of padding (more than 7 bits).
  assert.throws(() => huffmanDecode(Buffer.from([0x07, 0xff])), HuffmanError);
});

test('decoder: eviction, size updates and their limits, bad indexes and truncated blocks', () => {
  const d = new HpackDecoder(100);
  // Each entry is 32 + 1 + 10 = 43 bytes: a third evicts the first.
  for (const v of ['aaaaaaaaaa', 'bbbbbbbbbb', 'cccccccccc']) d.decode(hpack.incremental('x', hpack.string(v)));
  assert.deepEqual(pairs(d.decode(Buffer.concat([hpack.indexed(62), hpack.indexed(63)]))), [['x', 'cccccccccc'], ['x', 'bbbbbbbbbb']]);
  assert.throws(() => d.decode(hpack.indexed(64)), HpackError);
  assert.throws(() => d.decode(hpack.sizeUpdate(101)), /exceeds 100/);
  d.decode(hpack.sizeUpdate(0));
  assert.throws(() => d.decode(hpack.indexed(62)), /past the dynamic table/);
  assert.throws(() => d.decode(Buffer.concat([hpack.indexed(2), hpack.sizeUpdate(50)])), /after a header field/);
  assert.throws(() => d.decode(hpack.indexed(0)), /index 0/);
  assert.throws(() => d.decode(Buffer.from([0x00, 0x05, 0x61])), /past the end/);
  assert.throws(() => d.decode(Buffer.from([0x7f])), /inside an integer/);
  const small = new HpackDecoder(4096, 100);
  assert.throws(() => small.decode(hpack.plain('n', hpack.string('v'.repeat(80)))), /header list larger/);
});

test('encodeHeaders writes nothing a decoder would index, and keeps never-indexed fields so', () => {
  const fields: HeaderField[] = [
    { name: ':method', value: 'POST', sensitive: false },
    { name: ':authority', value: 'localhost', sensitive: false },
    { name: 'authorization', value: 'secret', sensitive: true },
    { name: 'x-long', value: 'y'.repeat(300), sensitive: false },
  ];
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(encodeHeaders(fields)), fields);
  assert.throws(() => d.decode(hpack.indexed(62)), /past the dynamic table/);
});

test('authority: refused octets are percent-encoded; a request with none or an empty one gets localhost; trailers get nothing', () => {
  assert.equal(acceptableAuthority('/run/gvisor-cri/gvisor-cri.sock'), '%2Frun%2Fgvisor-cri%2Fgvisor-cri.sock');
  assert.equal(acceptableAuthority('localhost:8080'), 'localhost:8080');
  assert.equal(acceptableAuthority('a b?'), 'a%20b%3F');
  assert.equal(acceptableAuthority(''), undefined);
  const f = (name: string, value: string): HeaderField => ({ name, value, sensitive: false });
  assert.deepEqual(pairs(rewriteAuthority([f(':method', 'POST'), f(':path', '/x'), f('te', 'trailers')])), [[':method', 'POST'], [':path', '/x'], [':authority', 'localhost'], ['te', 'trailers']]);
  assert.deepEqual(pairs(rewriteAuthority([f(':method', 'POST'), f(':authority', '')])), [[':method', 'POST'], [':authority', 'localhost']]);
  assert.deepEqual(pairs(rewriteAuthority([f('grpc-status', '0')])), [['grpc-status', '0']]);
});

/** The frames a rewriter passes on for `input`, fed as the given chunks. */
function rewrite(chunks: Buffer[]): Buffer {
  const r = new InboundRewriter();
  return Buffer.concat(chunks.flatMap((c) => r.process(c)));
}

/** The header lists of every HEADERS block in a stream of frames (our output: whole blocks, no padding). */
function blocks(bytes: Buffer): string[][][] {
  const d = new HpackDecoder();
  const out: string[][][] = [];
  for (let p = PREFACE.length; p < bytes.length; p += 9 + bytes.readUIntBE(p, 3)) {
    if (bytes[p + 3] === HEADERS) out.push(pairs(d.decode(bytes.subarray(p + 9, p + 9 + bytes.readUIntBE(p, 3)))));
  }
  return out;
}

test('rewriter: crictl 1.26.1 bytes give the same output however the socket splits them, with the path authority percent-encoded', async () => {
  const bytes = await readFile(join(REPO_ROOT, 'test/fixtures/grpc-go-uds/crictl-1.26.1-version.bin'));
  const whole = rewrite([bytes]);
  const [first, second] = blocks(whole);
  assert.deepEqual(first!.find(([n]) => n === ':authority'), [':authority', '%2Frun%2Fgvisor-cri%2Fgvisor-cri.sock']);
  assert.deepEqual(second!.find(([n]) => n === ':authority'), [':authority', '%2Frun%2Fgvisor-cri%2Fgvisor-cri.sock']);
  // Frames that are not header blocks pass unchanged: the DATA of stream 3 ends the output.
  assert.deepEqual(whole.subarray(whole.length - 18), bytes.subarray(bytes.length - 18));
  for (const size of [1, 2, 7, 9, 10, 13, 64]) {
    const chunks: Buffer[] = [];
    for (let p = 0; p < bytes.length; p += size) chunks.push(bytes.subarray(p, p + size));
    assert.deepEqual(rewrite(chunks), whole, `chunks of ${size}`);
  }
});

test('rewriter: a non-HTTP/2 client passes through untouched; frame-order and size errors are connection errors', () => {
  const junk = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.deepEqual(rewrite([junk.subarray(0, 5), junk.subarray(5)]), junk);
  const start = Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]);
  const expectError = (bytes: Buffer, code: number): void => {
    assert.throws(() => rewrite([start, bytes]), (err: unknown) => err instanceof ConnectionError && err.code === code);
  };
  expectError(frame(CONTINUATION, END_HEADERS, 1, hpack.indexed(2)), 0x1);
  expectError(Buffer.concat([frame(HEADERS, 0, 1, hpack.indexed(2)), frame(SETTINGS, 0, 0)]), 0x1);
  expectError(Buffer.concat([frame(HEADERS, 0, 1, hpack.indexed(2)), frame(CONTINUATION, END_HEADERS, 3, hpack.indexed(2))]), 0x1);
  expectError(frame(HEADERS, END_HEADERS, 0, hpack.indexed(2)), 0x1);
  expectError(frame(HEADERS, END_HEADERS, 1, Buffer.alloc(16385)), 0x6);
  expectError(frame(HEADERS, END_HEADERS, 1, hpack.indexed(99)), 0x9);
});

test('rewriter: blocks that need no change go as sent until one does; from then on every block is re-encoded, table references included', () => {
  const path = '/runtime.v1.RuntimeService/Version';
  const start = Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]);
  // localhost becomes dynamic entry 62; then the socket path, which pushes it to 63.
  const first = frame(HEADERS, END_HEADERS, 1, grpcRequestBlock(path, [hpack.incremental(1, hpack.string('localhost'))]));
  const again = frame(HEADERS, END_HEADERS, 3, grpcRequestBlock(path, [hpack.indexed(62)]));
  const changed = frame(HEADERS, END_HEADERS, 5, grpcRequestBlock(path, [hpack.incremental(1, hpack.string('/run/a.sock'))]));
  const later = frame(HEADERS, END_HEADERS, 7, grpcRequestBlock(path, [hpack.indexed(63)]));
  const r = new InboundRewriter();
  const out = (bytes: Buffer): Buffer => Buffer.concat(r.process(bytes));
  assert.deepEqual(out(Buffer.concat([start, first])), Buffer.concat([start, first]));
  assert.deepEqual(out(again), again);
  // What the server decodes, with one HPACK state across the connection as nghttp2 keeps it.
  const server = new HpackDecoder();
  server.decode(first.subarray(9));
  server.decode(again.subarray(9));
  const authority = (bytes: Buffer): string | undefined => server.decode(bytes.subarray(9)).find((f) => f.name === ':authority')?.value;
  const rewritten = out(changed);
  assert.notDeepEqual(rewritten, changed);
  assert.equal(authority(rewritten), '%2Frun%2Fa.sock');
  const relayed = out(later);
  assert.notDeepEqual(relayed, later);
  assert.equal(authority(relayed), 'localhost');
});
