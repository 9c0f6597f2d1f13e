/**
 * HPACK's Huffman code (RFC 7541, Appendix B), decoding only.
 *
 * The code is canonical: within one length the codes follow the symbol order,
 * so each symbol's code length (the table below, symbols 0..255 and EOS = 256)
 * is all it takes to rebuild every code.
 */
const CODE_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;
const MAX_LENGTH = 30;

/** Per code length: the first code, how many codes, and where their symbols start in SYMBOLS. */
const FIRST = new Int32Array(MAX_LENGTH + 1);
const COUNT = new Int32Array(MAX_LENGTH + 1);
const OFFSET = new Int32Array(MAX_LENGTH + 1);
const SYMBOLS = CODE_LENGTHS.map((_, sym) => sym).sort((a, b) => CODE_LENGTHS[a]! - CODE_LENGTHS[b]! || a - b);

{
  let code = 0;
  let length = 0;
  SYMBOLS.forEach((sym, i) => {
    const len = CODE_LENGTHS[sym]!;
    if (i > 0) code = (code + 1) << (len - length);
    if (COUNT[len] === 0) {
      FIRST[len] = code;
      OFFSET[len] = i;
    }
    COUNT[len]!++;
    length = len;
  });
}

export class HuffmanError extends Error {}

/** Decodes a Huffman-coded HPACK string; throws HuffmanError on EOS, a bad code or bad padding. */
export function huffmanDecode(input: Buffer): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil((input.length * 8) / 5));
  let n = 0;
  let code = 0;
  let length = 0;
  for (const byte of input) {
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      length++;
      const index = code - FIRST[length]!;
      if (index >= 0 && index < COUNT[length]!) {
        const sym = SYMBOLS[OFFSET[length]! + index]!;
        if (sym === EOS) throw new HuffmanError('Huffman string contains EOS');
        out[n++] = sym;
        code = 0;
        length = 0;
      } else if (length === MAX_LENGTH) {
        throw new HuffmanError('invalid Huffman code');
      }
    }
  }
  // What is left must be a prefix of EOS (all ones) and shorter than a byte.
  if (length > 7 || code !== (1 << length) - 1) throw new HuffmanError('invalid Huffman padding');
  return out.subarray(0, n);
}
