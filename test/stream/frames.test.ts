import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { describe, it } from 'node:test';
import { SPDY3_DICTIONARY } from '../../stream/spdy/dictionary.js';
import {
  FLAG_FIN, FrameParser, SpdyProtocolError, decodeHeaderBlock, encodeFrame, encodeHeaderBlock, type Frame,
} from '../../stream/spdy/frames.js';
import { HeaderCompressor, HeaderDecompressor } from '../../stream/spdy/header-compression.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function adler32(buf: Buffer): number {
  let a = 1;
  let b = 0;
  for (const x of buf) {
    a = (a + x) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

describe('SPDY/3 dictionary', () => {
  it('is the published 1423-byte dictionary', () => {
    assert.equal(SPDY3_DICTIONARY.length, 1423);
    assert.equal(adler32(SPDY3_DICTIONARY), 0xe3c6a7c2);
    assert.ok(SPDY3_DICTIONARY.subarray(0, 11).equals(hex('00000007 6f7074696f6e73')));
    assert.equal(createHash('sha256').update(SPDY3_DICTIONARY).digest('hex').length, 64);
  });
});

describe('header compression', () => {
  it('inflates the spec test vector of an empty block', async () => {
    const d = new HeaderDecompressor();
    assert.deepEqual(await d.decompress(hex('78f9e3c6a7c202a6230600000000ffff')), hex('00000000'));
    d.close();
  });

  it('writes stored blocks with the dictionary id and a sync flush, decodable by plain zlib', async () => {
    const c = new HeaderCompressor();
    const out = await c.compress(hex('00000000'));
    assert.deepEqual(out, hex('78f9e3c6a7c2 00 0400 fbff 00000000 00 0000 ffff'));
    const plain = zlib.inflateSync(out, { dictionary: SPDY3_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    assert.deepEqual(plain, hex('00000000'));
  });

  it('splits a block over 64 KiB into stored blocks of one stream', async () => {
    const c = new HeaderCompressor();
    const big = encodeHeaderBlock({ 'x-big': ['v'.repeat(150_000)] });
    const first = await c.compress(encodeHeaderBlock({ streamtype: ['error'] }));
    const second = await c.compress(big);
    const plain = zlib.inflateSync(Buffer.concat([first, second]), { dictionary: SPDY3_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    assert.deepEqual(plain, Buffer.concat([encodeHeaderBlock({ streamtype: ['error'] }), big]));
  });

  it('keeps one context per direction across blocks, in call order', async () => {
    const c = new HeaderCompressor();
    const d = new HeaderDecompressor();
    const blocks = Array.from({ length: 50 }, (_, i) => encodeHeaderBlock({ streamtype: [i % 2 ? 'stdout' : 'stderr'], port: [String(8000 + i)], requestid: [String(i)] }));
    const compressed = await Promise.all(blocks.map((b) => c.compress(b)));
    // Only the first block starts the zlib stream: the others continue it.
    assert.ok(compressed.slice(1).every((b) => b[0] === 0));
    const back = await Promise.all(compressed.map((b) => d.decompress(b)));
    back.forEach((b, i) => assert.deepEqual(decodeHeaderBlock(b), decodeHeaderBlock(blocks[i]!)));
    d.close();
  });

  it('rejects garbage instead of hanging', async () => {
    const d = new HeaderDecompressor();
    await assert.rejects(d.decompress(hex('0102030405060708')), SpdyProtocolError);
    d.close();
  });
});

describe('header blocks', () => {
  it('encodes pairs with u32 lengths and NUL-joined values', () => {
    assert.deepEqual(encodeHeaderBlock({ a: ['b', 'c'] }), hex('00000001 00000001 61 00000003 62 00 63'));
    assert.deepEqual(decodeHeaderBlock(hex('00000001 00000001 61 00000003 62 00 63')), { a: ['b', 'c'] });
  });

  it('refuses uppercase names on the way out and lowercases them on the way in', () => {
    assert.throws(() => encodeHeaderBlock({ StreamType: ['error'] }), RangeError);
    assert.deepEqual(decodeHeaderBlock(hex('00000001 00000001 41 00000001 62')), { a: ['b'] });
  });

  it('rejects duplicates and truncation', () => {
    assert.throws(() => decodeHeaderBlock(hex('00000002 00000001 61 00000001 62 00000001 61 00000001 63')), SpdyProtocolError);
    assert.throws(() => decodeHeaderBlock(hex('00000001 00000005 61')), SpdyProtocolError);
  });
});

describe('frames', () => {
  const samples: Frame[] = [
    { type: 'data', streamId: 1, flags: FLAG_FIN, data: Buffer.from('hi') },
    { type: 'syn_stream', streamId: 3, associatedId: 0, priority: 0, slot: 0, flags: 0, headerBlock: hex('abcd') },
    { type: 'syn_reply', streamId: 3, flags: 0, headerBlock: hex('1234') },
    { type: 'rst_stream', streamId: 5, flags: 0, status: 5 },
    { type: 'settings', flags: 0, entries: [{ flags: 1, id: 4, value: 1000 }, { flags: 0, id: 7, value: 65536 }] },
    { type: 'ping', flags: 0, id: 7 },
    { type: 'goaway', flags: 0, lastGoodStreamId: 9, status: 0 },
    { type: 'headers', streamId: 1, flags: 0, headerBlock: hex('00') },
    { type: 'window_update', streamId: 1, flags: 0, delta: 65536 },
  ];

  it('round-trips every frame type', () => {
    for (const f of samples) assert.deepEqual(new FrameParser().push(encodeFrame(f)), [f]);
  });

  it('matches hand-written bytes', () => {
    assert.deepEqual(encodeFrame(samples[0]!), hex('00000001 01000002 6869'));
    assert.deepEqual(encodeFrame({ type: 'ping', flags: 0, id: 1 }), hex('80030006 00000004 00000001'));
    assert.deepEqual(encodeFrame({ type: 'rst_stream', streamId: 5, flags: 0, status: 5 }), hex('80030003 00000008 00000005 00000005'));
    assert.deepEqual(encodeFrame({ type: 'goaway', flags: 0, lastGoodStreamId: 9, status: 0 }), hex('80030007 00000008 00000009 00000000'));
    assert.deepEqual(encodeFrame({ type: 'syn_reply', streamId: 1, flags: 0, headerBlock: hex('aa') }), hex('80030002 00000005 00000001 aa'));
    assert.deepEqual(encodeFrame({ type: 'syn_stream', streamId: 1, associatedId: 0, priority: 7, slot: 0, flags: 2, headerBlock: Buffer.alloc(0) }), hex('80030001 0200000a 00000001 00000000 e000'));
    assert.deepEqual(new FrameParser().push(hex('80030006 00000004 00000003')), [{ type: 'ping', flags: 0, id: 3 }]);
  });

  it('parses a byte stream cut at every position', () => {
    const stream = Buffer.concat(samples.map(encodeFrame));
    const parser = new FrameParser();
    const got: Frame[] = [];
    for (const b of stream) got.push(...parser.push(Buffer.from([b])));
    assert.deepEqual(got, samples);
    assert.equal(parser.buffered, 0);
  });

  it('assembles a large DATA frame arriving in pieces', () => {
    const data = Buffer.alloc(3 * 1024 * 1024, 0x5a);
    const bytes = encodeFrame({ type: 'data', streamId: 1, flags: 0, data });
    const parser = new FrameParser();
    const got: Frame[] = [];
    for (let off = 0; off < bytes.length; off += 65536) got.push(...parser.push(bytes.subarray(off, off + 65536)));
    assert.equal(got.length, 1);
    assert.ok(got[0]!.type === 'data' && got[0].data.equals(data));
  });

  it('cuts 32 KiB DATA frames out of 64 KiB socket chunks intact, copying only frames cut by a chunk edge', () => {
    const payloads = Array.from({ length: 40 }, (_, i) => Buffer.alloc(32 * 1024, i));
    const bytes = Buffer.concat(payloads.map((data, i) => encodeFrame({ type: 'data', streamId: 1, flags: i === 39 ? 1 : 0, data })));
    const parser = new FrameParser();
    const got: Frame[] = [];
    const chunks: Buffer[] = [];
    for (let off = 0; off < bytes.length; off += 65536) chunks.push(Buffer.from(bytes.subarray(off, off + 65536)));
    let views = 0;
    for (const c of chunks) {
      for (const f of parser.push(c)) {
        got.push(f);
        if (f.type === 'data' && f.data.buffer === c.buffer) views++;
      }
    }
    assert.equal(parser.buffered, 0);
    assert.deepEqual(got.map((f) => f.type === 'data' && f.flags), payloads.map((_, i) => (i === 39 ? 1 : 0)));
    got.forEach((f, i) => assert.ok(f.type === 'data' && f.data.equals(payloads[i]!), `frame ${i}`));
    // Each chunk holds about one whole frame of its own; the other one straddles an edge.
    assert.ok(views >= 15, `${views} frames were views of their chunk`);
  });

  it('keeps unknown control types and rejects other versions', () => {
    assert.deepEqual(new FrameParser().push(hex('8003000a 00000001 ff')), [{ type: 'unknown', frameType: 10, flags: 0, payload: hex('ff') }]);
    assert.throws(() => new FrameParser().push(hex('80020006 00000004 00000001')), SpdyProtocolError);
    assert.throws(() => new FrameParser().push(hex('80030006 00000002 0000')), SpdyProtocolError);
  });
});
