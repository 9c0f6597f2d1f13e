import { execa } from 'execa';

/**
 * How short-lived tools (CNI plugins, unshare, ip) are run to their end with
 * their output captured. Forking from the daemon copies its page tables on
 * the event loop (1-7 ms a call, growing with its memory); the daemon
 * injects a launcher that forks from a small process instead (the runsc
 * reaper), and execa is used whenever none is given or it is not running.
 * The tool wrappers keep their own arguments, timeouts and error mapping.
 */

export interface CaptureRequest {
  file: string;
  args: readonly string[];
  /** Set on top of the daemon's environment. */
  env?: Readonly<Record<string, string>>;
  /** The program's stdin; /dev/null when absent. */
  input?: string;
  /** The program is killed (SIGKILL at the latest) once it runs this long; 0: no limit. */
  timeoutMs: number;
  /** Kills the program when it aborts. */
  signal?: AbortSignal;
}

export interface CaptureResult {
  /** Undefined when it did not exit normally (killed, or never ran). */
  exitCode: number | undefined;
  timedOut: boolean;
  /** Killed because the request's signal aborted. */
  cancelled: boolean;
  /** Why it could not be run at all; undefined when it ran. */
  notRun?: string;
  /** Without the final newline, as execa gives it. */
  stdout: string;
  stderr: string;
}

export interface Launcher {
  /** False once it cannot take calls; runCaptured then uses execa. */
  readonly available: boolean;
  run(req: CaptureRequest): Promise<CaptureResult>;
}

/** Grace after SIGTERM at the timeout before SIGKILL, on the execa path. */
const FORCE_KILL_AFTER_MS = 1000;

/** Runs req through `launcher` when it is available, else through execa. */
export async function runCaptured(req: CaptureRequest, launcher?: Launcher): Promise<CaptureResult> {
  if (launcher?.available) return launcher.run(req);
  const r = await execa(req.file, [...req.args], {
    reject: false,
    ...(req.input === undefined ? { stdin: 'ignore' as const } : { input: req.input }),
    env: req.env,
    timeout: req.timeoutMs > 0 ? req.timeoutMs : undefined,
    forceKillAfterDelay: FORCE_KILL_AFTER_MS,
    cancelSignal: req.signal,
  });
  const notRun = r.failed && r.exitCode === undefined && r.signal === undefined && !r.timedOut && !r.isCanceled ? (r.shortMessage ?? 'could not run') : undefined;
  return { exitCode: r.exitCode, timedOut: r.timedOut, cancelled: r.isCanceled, notRun, stdout: r.stdout, stderr: r.stderr };
}

/** Drops one trailing newline, as execa's stripFinalNewline does. */
export function stripFinalNewline(s: string): string {
  return s.endsWith('\r\n') ? s.slice(0, -2) : s.endsWith('\n') ? s.slice(0, -1) : s;
}
