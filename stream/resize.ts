// Terminal resize messages: concatenated JSON objects {"Width":W,"Height":H}
// that may be split anywhere across frames, so they are cut out incrementally.

import type { TerminalSize } from './types.js';

/** A resize object longer than this is garbage, not a size. */
const MAX_OBJECT = 4096;

/** Parses one resize object; keys are case-insensitive (Go's json does so). Undefined if it is not one. */
export function parseTerminalSize(text: string): TerminalSize | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  let width = 0;
  let height = 0;
  for (const [k, v] of Object.entries(value)) {
    const key = k.toLowerCase();
    if (key !== 'width' && key !== 'height') continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) return undefined;
    if (key === 'width') width = v;
    else height = v;
  }
  return { width, height };
}

/** Splits a byte stream of concatenated JSON objects into terminal sizes. */
export class ResizeDecoder {
  private buf = '';

  /** Returns the sizes completed by this chunk; throws if the stream is not resize JSON. */
  push(chunk: Buffer | string): TerminalSize[] {
    this.buf += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    const sizes: TerminalSize[] = [];
    for (;;) {
      const start = this.buf.search(/\S/);
      if (start < 0) { this.buf = ''; break; }
      if (this.buf[start] !== '{') throw new Error(`resize stream carries ${JSON.stringify(this.buf.slice(start, start + 20))}, not a JSON object`);
      const end = objectEnd(this.buf, start);
      if (end < 0) {
        if (this.buf.length - start > MAX_OBJECT) throw new Error(`resize message exceeds ${MAX_OBJECT} bytes`);
        this.buf = this.buf.slice(start);
        break;
      }
      const text = this.buf.slice(start, end);
      this.buf = this.buf.slice(end);
      const size = parseTerminalSize(text);
      if (!size) throw new Error(`resize message ${JSON.stringify(text.slice(0, 100))} is not {"Width":W,"Height":H}`);
      sizes.push(size);
    }
    return sizes;
  }
}

/** Index just past the object starting at start, or -1 if it is not complete yet. */
function objectEnd(s: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{') {
      depth++;
    } else if (c === '}') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** An async queue of sizes: the producer pushes as frames arrive, the backend iterates. */
export class ResizeQueue implements AsyncIterable<TerminalSize> {
  private items: TerminalSize[] = [];
  private waiting: ((r: IteratorResult<TerminalSize>) => void) | undefined;
  private ended = false;

  push(size: TerminalSize): void {
    if (this.ended) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: size, done: false });
    } else {
      this.items.push(size);
    }
  }

  end(): void {
    this.ended = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<TerminalSize> {
    return {
      next: (): Promise<IteratorResult<TerminalSize>> => {
        const item = this.items.shift();
        if (item) return Promise.resolve({ value: item, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => { this.waiting = resolve; });
      },
      return: (): Promise<IteratorResult<TerminalSize>> => {
        this.end();
        this.items = [];
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
