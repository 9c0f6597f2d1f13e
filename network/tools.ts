import { runCaptured, type Launcher } from '../common/index.js';

/**
 * The external tools this module runs for network namespaces, each through
 * one typed function. Argument building, timeouts and error mapping live here.
 */

const TOOL_TIMEOUT_MS = 10_000;

/** A tool run that failed: names the command line and carries its stderr. */
export class ToolError extends Error {
  constructor(
    readonly tool: string,
    readonly args: readonly string[],
    readonly stderr: string,
    detail: string,
  ) {
    super(`${tool} ${args.join(' ')}: ${detail}${stderr ? `: ${stderr}` : ''}`);
    this.name = 'ToolError';
  }
}

async function run(tool: string, args: string[], launcher: Launcher | undefined): Promise<string> {
  const r = await runCaptured({ file: tool, args, timeoutMs: TOOL_TIMEOUT_MS }, launcher);
  if (r.timedOut) throw new ToolError(tool, args, r.stderr.trim(), `timed out after ${TOOL_TIMEOUT_MS} ms`);
  if (r.exitCode !== 0) {
    const detail = r.exitCode !== undefined ? `exit code ${r.exitCode}` : (r.notRun ?? 'killed');
    throw new ToolError(tool, args, r.stderr.trim(), detail);
  }
  return r.stdout;
}

/**
 * `unshare --net=FILE ip link set lo up`: makes a new network namespace,
 * bind-mounts it on FILE (which must exist) and brings its loopback up, in
 * one process.
 */
export async function unshareNetWithLoopback(file: string, launcher?: Launcher): Promise<void> {
  await run('unshare', [`--net=${file}`, 'ip', 'link', 'set', 'lo', 'up'], launcher);
}

/** `umount PATH`. */
export async function umount(path: string, launcher?: Launcher): Promise<void> {
  await run('umount', [path], launcher);
}

/** `nsenter --net=NETNS ip ARGS...`: iproute2 inside a namespace given by path (`ip -n` only takes names). */
export async function ipInNetns(netns: string, args: string[], launcher?: Launcher): Promise<string> {
  return run('nsenter', [`--net=${netns}`, 'ip', ...args], launcher);
}
