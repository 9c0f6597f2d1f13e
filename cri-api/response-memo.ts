/**
 * kubelet asks the same status and list questions over and over (PLEG's
 * relist each second, every pod's status sync), and the answers seldom
 * change between asks. Encoding an answer (protobufjs' fromObject, encode,
 * 64-bit strings to Long) was the largest share of such a call's own CPU.
 *
 * Per RPC, the last answer to each distinct request is kept with its wire
 * bytes. An answer equal to the kept one is sent as those bytes. Equality
 * of the whole answer, not a version number, decides: nothing that builds
 * an answer has to remember to invalidate anything.
 */

interface Entry {
  /** A copy of the answer, so a later in-place change of a record the answer shared objects with cannot make a changed answer look equal. */
  res: unknown;
  bytes: Buffer;
}

export class ResponseMemo {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly serialize: (res: unknown) => Buffer,
    /** Bounds the memory; past it the oldest request's entry goes (a node with more containers than this just encodes more). */
    private readonly maxEntries = 1024,
  ) {}

  /** The wire bytes of `res`, the answer to the request whose bytes are `request`. */
  encode(request: Buffer, res: unknown): Buffer {
    const key = request.toString('latin1');
    const kept = this.entries.get(key);
    if (kept && sameMessage(kept.res, res)) return kept.bytes;
    const bytes = this.serialize(res);
    if (kept) this.entries.delete(key);
    else if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { res: structuredClone(res), bytes });
    return bytes;
  }
}

/**
 * Whether two answers, as handlers build them (plain objects, arrays,
 * strings, numbers, booleans, bytes), are the same message. Two such
 * values that are equal here encode to the same message.
 */
export function sameMessage(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    return ArrayBuffer.isView(a) && ArrayBuffer.isView(b) && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameMessage(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let count = 0;
  for (const k in x) {
    if (!Object.hasOwn(x, k)) continue;
    if (!Object.hasOwn(y, k) || !sameMessage(x[k], y[k])) return false;
    count++;
  }
  for (const k in y) if (Object.hasOwn(y, k)) count--;
  return count === 0;
}
