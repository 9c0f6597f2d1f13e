/**
 * HPACK (RFC 7541): a full decoder, and an encoder that only writes literals
 * without indexing, so that what it writes never touches the peer's dynamic
 * table. Names and values are kept as latin1 strings: one char per octet, so
 * re-encoding gives back the very bytes the client sent.
 */
import { huffmanDecode, HuffmanError } from './hpack-huffman.js';

export interface HeaderField {
  name: string;
  value: string;
  /** Sent as "never indexed" (e.g. credentials): re-encoded the same way. */
  sensitive: boolean;
}

export class HpackError extends Error {}

const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

/** An entry's size as RFC 7541 §4.1 counts it. */
const entrySize = (name: string, value: string): number => name.length + value.length + 32;

export class HpackDecoder {
  /** Newest entry first, as HPACK indexes them. */
  private readonly dynamic: [string, string][] = [];
  private size = 0;
  private maxSize: number;

  /**
   * @param limit SETTINGS_HEADER_TABLE_SIZE the server announced: the most a size update may ask for.
   * @param maxListSize the most decoded header list bytes one block may expand to (indexed references can multiply a small block).
   */
  constructor(
    private limit = 4096,
    private readonly maxListSize = 256 * 1024,
  ) {
    this.maxSize = limit;
  }

  setLimit(limit: number): void {
    this.limit = limit;
    if (this.maxSize > limit) this.resize(limit);
  }

  decode(block: Buffer): HeaderField[] {
    const fields: HeaderField[] = [];
    let pos = 0;
    let listSize = 0;
    const integer = (prefixBits: number): number => {
      if (pos >= block.length) throw new HpackError('header block ends inside an integer');
      const max = (1 << prefixBits) - 1;
      let value = block[pos++]! & max;
      if (value < max) return value;
      for (let shift = 0; ; shift += 7) {
        if (pos >= block.length) throw new HpackError('header block ends inside an integer');
        if (shift > 28) throw new HpackError('integer too large');
        const b = block[pos++]!;
        value += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) return value;
      }
    };
    const string = (): string => {
      if (pos >= block.length) throw new HpackError('header block ends before a string');
      const huffman = (block[pos]! & 0x80) !== 0;
      const length = integer(7);
      if (length > block.length - pos) throw new HpackError('string runs past the end of the header block');
      const raw = block.subarray(pos, pos + length);
      pos += length;
      try {
        return (huffman ? huffmanDecode(raw) : raw).toString('latin1');
      } catch (err) {
        if (err instanceof HuffmanError) throw new HpackError(err.message);
        throw err;
      }
    };
    const entry = (index: number): readonly [string, string] => {
      if (index === 0) throw new HpackError('index 0');
      if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
      const e = this.dynamic[index - STATIC_TABLE.length - 1];
      if (!e) throw new HpackError(`index ${index} is past the dynamic table`);
      return e;
    };
    const emit = (name: string, value: string, sensitive: boolean): void => {
      listSize += entrySize(name, value);
      if (listSize > this.maxListSize) throw new HpackError(`header list larger than ${this.maxListSize} bytes`);
      fields.push({ name, value, sensitive });
    };

    while (pos < block.length) {
      const b = block[pos]!;
      if (b & 0x80) {
        const [name, value] = entry(integer(7));
        emit(name, value, false);
      } else if (b & 0x40) {
        const index = integer(6);
        const name = index === 0 ? string() : entry(index)[0];
        const value = string();
        this.insert(name, value);
        emit(name, value, false);
      } else if (b & 0x20) {
        // Size updates belong at the start of a block (RFC 7541 §4.2).
        if (fields.length > 0) throw new HpackError('dynamic table size update after a header field');
        const size = integer(5);
        if (size > this.limit) throw new HpackError(`dynamic table size update to ${size} exceeds ${this.limit}`);
        this.resize(size);
      } else {
        const sensitive = (b & 0x10) !== 0;
        const index = integer(4);
        const name = index === 0 ? string() : entry(index)[0];
        emit(name, string(), sensitive);
      }
    }
    return fields;
  }

  private insert(name: string, value: string): void {
    const size = entrySize(name, value);
    this.evictTo(this.maxSize - size);
    // An entry larger than the table empties it and is not added (RFC 7541 §4.4).
    if (size <= this.maxSize) {
      this.dynamic.unshift([name, value]);
      this.size += size;
    }
  }

  private resize(size: number): void {
    this.maxSize = size;
    this.evictTo(size);
  }

  private evictTo(size: number): void {
    while (this.size > Math.max(0, size)) {
      const [name, value] = this.dynamic.pop()!;
      this.size -= entrySize(name, value);
    }
  }
}

const STATIC_FULL = new Map(STATIC_TABLE.map(([name, value], i) => [`${name}\0${value}`, i + 1]));
const STATIC_NAME = new Map<string, number>();
STATIC_TABLE.forEach(([name], i) => {
  if (!STATIC_NAME.has(name)) STATIC_NAME.set(name, i + 1);
});

function writeInteger(out: number[], value: number, prefixBits: number, firstByte: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function writeString(out: number[], s: string): void {
  writeInteger(out, s.length, 7, 0);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i));
}

/**
 * Encodes a header list with static-table references and literals without
 * indexing only: the decoder's dynamic table is never used, so blocks can be
 * written one by one with no shared state.
 */
export function encodeHeaders(fields: readonly HeaderField[]): Buffer {
  const out: number[] = [];
  for (const { name, value, sensitive } of fields) {
    const full = sensitive ? undefined : STATIC_FULL.get(`${name}\0${value}`);
    if (full !== undefined) {
      writeInteger(out, full, 7, 0x80);
      continue;
    }
    const nameIndex = STATIC_NAME.get(name) ?? 0;
    writeInteger(out, nameIndex, 4, sensitive ? 0x10 : 0x00);
    if (nameIndex === 0) writeString(out, name);
    writeString(out, value);
  }
  return Buffer.from(out);
}
