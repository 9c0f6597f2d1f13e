/**
 * Reads the CRI log format the runtime writes (and kubelet reads):
 *   <RFC3339Nano time> <stdout|stderr> <P|F> <content>\n
 * P marks a partial line whose rest follows in the next record.
 */

export interface LogRecord {
  stream: 'stdout' | 'stderr';
  /** False for F: the content ends a line. */
  partial: boolean;
  content: Buffer;
}

const SPACE = 0x20;
const NEWLINE = 0x0a;

/** One record from one line (without its newline); undefined for a line that is not a CRI record. */
export function parseRecord(line: Buffer): LogRecord | undefined {
  const s1 = line.indexOf(SPACE);
  const s2 = s1 < 0 ? -1 : line.indexOf(SPACE, s1 + 1);
  if (s2 < 0) return undefined;
  const stream = line.subarray(s1 + 1, s2).toString('latin1');
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const s3 = line.indexOf(SPACE, s2 + 1);
  const tags = line.subarray(s2 + 1, s3 < 0 ? line.length : s3).toString('latin1');
  return { stream, partial: tags.split(':').includes('P'), content: s3 < 0 ? Buffer.alloc(0) : line.subarray(s3 + 1) };
}

/** Splits bytes into complete records; the bytes after the last newline are returned as the carry. */
export function splitRecords(data: Buffer): { records: LogRecord[]; carry: Buffer } {
  const records: LogRecord[] = [];
  let start = 0;
  for (let nl = data.indexOf(NEWLINE); nl >= 0; nl = data.indexOf(NEWLINE, start)) {
    const r = parseRecord(data.subarray(start, nl));
    if (r) records.push(r);
    start = nl + 1;
  }
  return { records, carry: Buffer.from(data.subarray(start)) };
}

/** The records of the last `n` lines; a line is one or more P records closed by an F record. */
export function lastLines(records: LogRecord[], n: number): LogRecord[] {
  if (n <= 0) return [];
  let seen = 0;
  for (let i = records.length - 1; i >= 0; i--) {
    // An unterminated run of P records at the very end counts as a line of its own.
    if (!records[i]!.partial || i === records.length - 1) seen++;
    if (seen > n) return records.slice(i + 1);
  }
  return records;
}
