/**
 * gVisor trace sessions (runtime monitoring): the session file every new
 * sandbox starts with (runsc --pod-init-config), checked once at daemon
 * start, and `runsc trace list` read back for verbose pod status.
 *
 * The file is what runsc takes, e.g.
 *   {"trace_session": {"name": "Default",
 *     "points": [{"name": "sentry/execve"}, {"name": "syscall/openat/enter"}],
 *     "sinks": [{"name": "remote", "config": {"endpoint": "/run/falco/gvisor.sock"}}]}}
 * A "remote" sink connects to a unix SOCK_SEQPACKET socket (Falco, gVisor's
 * tools) when the sandbox starts; checked with runsc 20240729: if nothing
 * listens there, `runsc create` fails ("cannot init config: connect(...)")
 * unless the sink says "ignore_setup_error": true, in which case the pod runs
 * with no session at all. A listener started later is never connected to.
 * The session must be named "Default": runsc 20240729 drops any other at
 * sandbox start with only a warning in its debug log ("only a single
 * \"Default\" session is supported"), leaving the pod unmonitored.
 */
import { readFile, stat } from 'node:fs/promises';

export interface TraceSink {
  name: string;
  /** The remote sink's socket path. */
  endpoint?: string;
  ignoreSetupError: boolean;
}

export interface TraceSessionConfig {
  path: string;
  name: string;
  points: string[];
  sinks: TraceSink[];
}

/** A session as `runsc trace list` reports it. */
export interface TraceSessionState {
  name: string;
  sinks: { name: string; dropped: number }[];
}

/** Thrown for an unusable session file: names the file and what is wrong. */
export class TraceSessionConfigError extends Error {
  constructor(path: string, what: string) {
    super(`trace-session-config ${path}: ${what}`);
    this.name = 'TraceSessionConfigError';
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads and checks the session file; runsc checks point names itself at sandbox start. */
export async function loadTraceSessionConfig(path: string): Promise<TraceSessionConfig> {
  const bad = (what: string): never => {
    throw new TraceSessionConfigError(path, what);
  };
  let text = '';
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    bad(`cannot be read: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    bad(`not JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc) || !isObject(doc.trace_session)) return bad('expected {"trace_session": {...}}, the format of runsc --pod-init-config');
  const s = doc.trace_session;
  if (s.name !== 'Default') bad(`trace_session.name: must be "Default" (runsc silently drops a pod-init session of any other name), got ${JSON.stringify(s.name)}`);
  if (!Array.isArray(s.points) || s.points.length === 0) bad('trace_session.points: expected a non-empty list of {"name": POINT}');
  const points = (s.points as unknown[]).map((p, i) => (isObject(p) && typeof p.name === 'string' && p.name !== '' ? p.name : bad(`trace_session.points[${i}]: expected {"name": POINT}`)));
  if (!Array.isArray(s.sinks) || s.sinks.length === 0) bad('trace_session.sinks: expected a non-empty list of sinks, e.g. {"name": "remote", "config": {"endpoint": SOCKET}}');
  const sinks = (s.sinks as unknown[]).map((k, i): TraceSink => {
    if (!isObject(k) || typeof k.name !== 'string' || k.name === '') return bad(`trace_session.sinks[${i}]: expected {"name": SINK, ...}`);
    const endpoint = isObject(k.config) && typeof k.config.endpoint === 'string' ? k.config.endpoint : undefined;
    if (k.name === 'remote' && (endpoint === undefined || !endpoint.startsWith('/'))) bad(`trace_session.sinks[${i}]: a remote sink needs config.endpoint, an absolute socket path`);
    return { name: k.name, endpoint, ignoreSetupError: k.ignore_setup_error === true };
  });
  return { path, name: s.name as string, points, sinks };
}

/**
 * Remote sinks whose socket is not there now: a pod started while it stays
 * absent fails (or, with ignore_setup_error, runs unmonitored).
 */
export async function missingSinkEndpoints(config: TraceSessionConfig): Promise<TraceSink[]> {
  const out: TraceSink[] = [];
  for (const sink of config.sinks) {
    if (sink.endpoint === undefined) continue;
    const st = await stat(sink.endpoint).catch(() => undefined);
    if (!st?.isSocket()) out.push(sink);
  }
  return out;
}

/**
 * Parses `runsc trace list` (runsc 20240729 prints text):
 *   SESSIONS (1)
 *   "Default"
 *   	Sink: "remote", dropped: 0
 */
export function parseTraceList(text: string): TraceSessionState[] {
  const sessions: TraceSessionState[] = [];
  for (const line of text.split('\n')) {
    const session = /^"(.*)"\s*$/.exec(line);
    if (session) {
      sessions.push({ name: session[1]!, sinks: [] });
      continue;
    }
    const sink = /^\s+Sink:\s*"(.*)",\s*dropped:\s*(\d+)/.exec(line);
    if (sink && sessions.length > 0) sessions[sessions.length - 1]!.sinks.push({ name: sink[1]!, dropped: Number(sink[2]) });
  }
  return sessions;
}
