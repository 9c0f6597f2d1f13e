/**
 * `gvisor-cri ctl`: a small crictl for operators and bootstrap scripts,
 * talking CRI to the daemon over its unix socket. One file per subcommand.
 */
import { ConfigError, loadConfig } from '../daemon/config.js';
import { parseFlags, type FlagSpec } from './args.js';
import { CtlClient, CtlError, usageError } from './client.js';
import type { Command, Ctx } from './command.js';
import { exec } from './cmd-exec.js';
import { images } from './cmd-images.js';
import { info } from './cmd-info.js';
import { inspect, inspectp } from './cmd-inspect.js';
import { logs } from './cmd-logs.js';
import { pods } from './cmd-pods.js';
import { ps } from './cmd-ps.js';
import { pull } from './cmd-pull.js';
import { rm, rmp } from './cmd-rm.js';
import { rmi } from './cmd-rmi.js';
import { stop, stopp } from './cmd-stop.js';
import { version } from './cmd-version.js';

const COMMANDS: readonly Command[] = [version, info, pods, ps, images, pull, rmi, inspect, inspectp, logs, exec, stop, stopp, rm, rmp];

const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: 'socket', value: true },
  { name: 'config', value: true },
  { name: 'output', short: 'o', value: true },
  { name: 'timeout', value: true },
  { name: 'help', short: 'h' },
];

const DEFAULT_TIMEOUT_SECONDS = 30;

function usage(): string {
  return `Usage: gvisor-cri ctl [--socket PATH] [-o json|table] [--timeout SECONDS] COMMAND [ARGS]

Commands:
${COMMANDS.map((c) => `  ${c.usage.padEnd(44)} ${c.summary}`).join('\n')}

Global flags (before or after the command):
  --socket PATH        the daemon's socket (default: "socket" from --config, else /run/gvisor-cri/gvisor-cri.sock)
  --config FILE        read the socket from this config file (default /etc/gvisor-cri/config.toml)
  -o, --output FORMAT  table (default) or json (the CRI response)
  --timeout SECONDS    deadline of each call (default ${DEFAULT_TIMEOUT_SECONDS}); with exec, also the command's timeout

IDs may be abbreviated to any unambiguous prefix, or given as the pod's or container's name.
Exit codes: 0 success (exec: the command's own code), 1 failure, 2 bad usage.
`;
}

/** Global flags may come before the command; the command's own parse accepts them again after it. */
function splitCommand(argv: readonly string[]): { before: string[]; name: string | undefined; rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) return { before: argv.slice(0, i), name: a, rest: argv.slice(i + 1) };
    const spec = GLOBAL_FLAGS.find((f) => a === `--${f.name}` || (f.short !== undefined && a === `-${f.short}`));
    if (spec?.value) i++;
  }
  return { before: [...argv], name: undefined, rest: [] };
}

async function socketPath(flags: Map<string, string>): Promise<string> {
  const given = flags.get('socket');
  if (given !== undefined) return given;
  const cfg = flags.get('config');
  try {
    return (await loadConfig(new Map(cfg === undefined ? [] : [['config', cfg]]))).socket;
  } catch (err) {
    if (err instanceof ConfigError) throw usageError(`${err.message} (or name the socket with --socket)`);
    throw err;
  }
}

async function run(argv: readonly string[]): Promise<number> {
  const { before, name, rest } = splitCommand(argv);
  const global = parseFlags(before, GLOBAL_FLAGS);
  if (name === 'help' || (global.flags.has('help') && name === undefined)) {
    process.stdout.write(usage());
    return 0;
  }
  if (name === undefined) throw usageError('no command given (see gvisor-cri ctl --help)');
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) throw usageError(`unknown command "${name}" (see gvisor-cri ctl --help)`);
  const clash = (g: FlagSpec): boolean => command.flags.some((f) => f.name === g.name || (g.short !== undefined && f.short === g.short));
  const args = parseFlags(rest, [...command.flags, ...GLOBAL_FLAGS.filter((g) => !clash(g))], command.stopAtPositional);
  const flags = new Map([...global.flags, ...args.flags]);
  if (flags.has('help')) {
    process.stdout.write(`Usage: gvisor-cri ctl ${command.usage}\n  ${command.summary}\n`);
    return 0;
  }
  const output = flags.get('output') ?? 'table';
  if (output !== 'json' && output !== 'table') throw usageError(`-o must be json or table, got "${output}"`);
  const timeoutRaw = flags.get('timeout');
  if (timeoutRaw !== undefined && !/^\d+(\.\d+)?$/.test(timeoutRaw)) throw usageError(`--timeout must be a number of seconds, got "${timeoutRaw}"`);
  const socket = await socketPath(flags);
  let client: CtlClient | undefined;
  const ctx: Ctx = {
    client: () => (client ??= new CtlClient(socket, ctx.timeoutMs)),
    output,
    timeoutMs: Number(timeoutRaw ?? DEFAULT_TIMEOUT_SECONDS) * 1000,
    timeoutGiven: timeoutRaw !== undefined,
  };
  try {
    return await command.run(ctx, args);
  } finally {
    client?.close();
  }
}

/** Runs `gvisor-cri ctl ARGV`; resolves with the exit code (0 ok, 1 failure, 2 usage; exec: the command's code). */
export async function runCtl(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (err) {
    if (err instanceof CtlError) {
      process.stderr.write(`gvisor-cri ctl: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`gvisor-cri ctl: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
