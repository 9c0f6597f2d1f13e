import { runCaptured, type Launcher } from '../common/index.js';
import { findPlugin } from './cni-config.js';

/**
 * The one wrapper around executing a CNI plugin binary, per the CNI spec's
 * protocol: parameters in CNI_* environment variables, the network config on
 * stdin, the result or a JSON error {code, msg, details} on stdout.
 */

export type CniCommand = 'ADD' | 'DEL' | 'CHECK';

export interface PluginCall {
  command: CniCommand;
  containerId: string;
  /** Empty when the namespace is already gone (allowed for DEL). */
  netns: string;
  ifName: string;
  /** CNI_ARGS key/value pairs, in order. */
  args: ReadonlyArray<readonly [string, string]>;
  binDirs: readonly string[];
  timeoutMs: number;
  /** Kills the plugin when it aborts (the caller's deadline passed or it gave up). */
  signal?: AbortSignal;
  /** Runs the plugin; execa when absent or not running. */
  launcher?: Launcher;
}

export type CniFailure = 'not-found' | 'timeout' | 'cancelled' | 'plugin-error' | 'bad-output';

/** A failed plugin call; the message names the plugin, the command and the plugin's own words. */
export class CniPluginError extends Error {
  constructor(
    readonly failure: CniFailure,
    readonly plugin: string,
    message: string,
    readonly code?: number,
    /** For 'cancelled': why the caller's signal aborted. */
    readonly reason?: unknown,
  ) {
    super(message);
    this.name = 'CniPluginError';
  }
}

interface CniErrorBody {
  code?: unknown;
  msg?: unknown;
  details?: unknown;
}

function describePluginError(stdout: string, stderr: string, exitCode: number | undefined, notRun: string | undefined): { text: string; code?: number } {
  try {
    const body = JSON.parse(stdout) as CniErrorBody;
    if (typeof body.msg === 'string') {
      const code = typeof body.code === 'number' ? body.code : undefined;
      const details = typeof body.details === 'string' && body.details !== '' ? ` (${body.details})` : '';
      return { text: `${body.msg}${details}${code !== undefined ? ` [CNI error code ${code}]` : ''}`, code };
    }
  } catch {
    // not a spec error body: fall back to whatever the plugin printed
  }
  const printed = (stderr.trim() || stdout.trim()).split('\n').slice(-5).join('; ');
  return { text: `${printed || notRun || 'no output'} [exit code ${exitCode ?? 'none'}]` };
}

/** Runs one plugin; resolves to its parsed stdout for ADD, undefined otherwise. */
export async function invokePlugin(type: string, conf: object, call: PluginCall): Promise<unknown> {
  const what = `CNI ${call.command} plugin "${type}"`;
  const binary = findPlugin(call.binDirs, type);
  if (binary === undefined) throw new CniPluginError('not-found', type, `${what}: not found in ${call.binDirs.join(', ')}`);
  const r = await runCaptured(
    {
      file: binary,
      args: [],
      input: JSON.stringify(conf),
      timeoutMs: call.timeoutMs,
      signal: call.signal,
      env: {
        CNI_COMMAND: call.command,
        CNI_CONTAINERID: call.containerId,
        CNI_NETNS: call.netns,
        CNI_IFNAME: call.ifName,
        CNI_PATH: call.binDirs.join(':'),
        CNI_ARGS: call.args.map(([k, v]) => `${k}=${v}`).join(';'),
      },
    },
    call.launcher,
  );
  if (r.timedOut) throw new CniPluginError('timeout', type, `${what}: timed out after ${call.timeoutMs} ms`);
  if (r.cancelled) {
    const reason: unknown = call.signal?.reason;
    throw new CniPluginError('cancelled', type, `${what}: stopped: ${reason instanceof Error ? reason.message : 'call cancelled'}`, undefined, reason);
  }
  if (r.exitCode !== 0) {
    const { text, code } = describePluginError(r.stdout, r.stderr, r.exitCode, r.notRun);
    throw new CniPluginError('plugin-error', type, `${what} failed: ${text}`, code);
  }
  if (call.command !== 'ADD') return undefined;
  try {
    return JSON.parse(r.stdout) as unknown;
  } catch {
    throw new CniPluginError('bad-output', type, `${what}: result is not JSON: ${r.stdout.slice(0, 200)}`);
  }
}
