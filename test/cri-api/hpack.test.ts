import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeHeaders, HpackDecoder, HpackError, type HeaderField } from '../../cri-api/hpack.js';
import { huffmanDecode, HuffmanError } from '../../cri-api/hpack-huffman.js';
import { hpack } from '../helpers/raw-h2.js';

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
