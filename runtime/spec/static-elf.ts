/** A static x86-64 ELF executable running `code` (position independent) right after its headers. */
export function staticElf(code: Buffer): Buffer {
  const base = 0x400000n;
  const headers = 64 + 56;
  const size = headers + code.length;
  const b = Buffer.alloc(size);
  // ELF header: 64-bit, little endian, version 1, executable, x86-64.
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0);
  b.writeUInt16LE(2, 16);
  b.writeUInt16LE(0x3e, 18);
  b.writeUInt32LE(1, 20);
  b.writeBigUInt64LE(base + BigInt(headers), 24); // entry: right after the headers
  b.writeBigUInt64LE(64n, 32); // program headers follow the ELF header
  b.writeUInt16LE(64, 52);
  b.writeUInt16LE(56, 54);
  b.writeUInt16LE(1, 56);
  // One PT_LOAD segment, read+execute, mapping the whole file at `base`.
  const ph = 64;
  b.writeUInt32LE(1, ph);
  b.writeUInt32LE(5, ph + 4);
  b.writeBigUInt64LE(0n, ph + 8);
  b.writeBigUInt64LE(base, ph + 16);
  b.writeBigUInt64LE(base, ph + 24);
  b.writeBigUInt64LE(BigInt(size), ph + 32);
  b.writeBigUInt64LE(BigInt(size), ph + 40);
  b.writeBigUInt64LE(0x1000n, ph + 48);
  code.copy(b, headers);
  return b;
}
