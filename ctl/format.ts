/** How ctl shows things to a person: aligned tables, relative times, sizes; and JSON for scripts. */

/** Left-aligned columns separated by three spaces, like crictl's tabwriter output. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** Docker's "N minutes ago" wording (go-units HumanDuration), which crictl users read every day. */
export function ago(createdAtNs: string, nowMs: number = Date.now()): string {
  const ns = BigInt(createdAtNs || '0');
  if (ns === 0n) return '';
  const seconds = Math.max(0, (nowMs - Number(ns / 1_000_000n)) / 1000);
  const minutes = Math.floor(seconds / 60);
  const hours = Math.floor(seconds / 3600 + 0.5);
  let text: string;
  if (seconds < 1) text = 'Less than a second';
  else if (Math.floor(seconds) === 1) text = '1 second';
  else if (seconds < 60) text = `${Math.floor(seconds)} seconds`;
  else if (minutes === 1) text = 'About a minute';
  else if (minutes < 60) text = `${minutes} minutes`;
  else if (hours === 1) text = 'About an hour';
  else if (hours < 48) text = `${hours} hours`;
  else if (hours < 24 * 7 * 2) text = `${Math.floor(hours / 24)} days`;
  else if (hours < 24 * 30 * 2) text = `${Math.floor(hours / 24 / 7)} weeks`;
  else if (hours < 24 * 365 * 2) text = `${Math.floor(hours / 24 / 30)} months`;
  else text = `${Math.floor(hours / 24 / 365)} years`;
  return `${text} ago`;
}

/** Decimal size with four significant digits ("5.12MB"), as docker and crictl print image sizes. */
export function humanSize(bytes: string | number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let n = Number(bytes);
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${Number(n.toPrecision(4))}${units[i]}`;
}

/** The short form of an ID people type and read: 13 characters, without a digest algorithm prefix. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 13);
}

/** SANDBOX_READY → Ready, CONTAINER_RUNNING → Running. */
export function stateName(state: string): string {
  const s = state.replace(/^(SANDBOX|CONTAINER)_/, '');
  if (s === 'NOTREADY') return 'NotReady';
  return s.charAt(0) + s.slice(1).toLowerCase();
}

/**
 * The CRI response as JSON. Bytes fields become base64 like protobuf's JSON
 * mapping, and `info` values that hold JSON (verbose status) are expanded so
 * the output is one document a script can query with jq.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    function (this: Record<string, unknown>, key: string, v: unknown) {
      const original = this[key];
      if (Buffer.isBuffer(original)) return original.toString('base64');
      if (key === 'info' && v !== null && typeof v === 'object' && !Array.isArray(v)) {
        const out: Record<string, unknown> = {};
        for (const [k, s] of Object.entries(v as Record<string, unknown>)) out[k] = typeof s === 'string' ? parseMaybeJson(s) : s;
        return out;
      }
      return v;
    },
    2,
  ) + '\n';
}

function parseMaybeJson(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return s;
  }
}
