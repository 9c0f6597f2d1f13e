import { createLogger } from '../cri-api/logger.js';
import { ConfigError, configToToml, defaultConfig, loadConfig, OPTIONS, parseArgs } from './config.js';
import { VERSION, versionInfo } from './version.js';

// Each command loads only its own code, so `ctl` and `check` start without the daemon's modules.
const USAGE = `gvisor-cri ${VERSION}: a Kubernetes CRI runtime that runs every pod in a gVisor sandbox

Usage:
  gvisor-cri [daemon] [flags]   serve CRI on the unix socket
  gvisor-cri config [flags]     print the effective configuration as TOML
  gvisor-cri check [flags]      preflight checks for this node (exit 0 only if all required pass)
  gvisor-cri ctl COMMAND ...    CRI client for operators: pods, ps, images, logs, exec... (see ctl --help)
  gvisor-cri install [--root DIR] [--prefix DIR]   write the systemd unit and a default config
  gvisor-cri --version [flags]  version, build commit, Node.js runtime and the runsc (--runsc) version

Flags (also settable in the config file, see README):
${OPTIONS.filter((o) => !o.fileOnly).map((o) => `  --${o.name.padEnd(26)} ${o.doc}`).join('\n')}
`;

/** Exit codes: 0 ok, 1 runtime failure (or failed checks), 2 bad usage or configuration. */
export async function main(argv: string[]): Promise<number> {
  // ctl and install parse their own arguments: their flags are not daemon options.
  if (argv[0] === 'ctl') return (await import('../ctl/index.js')).runCtl(argv.slice(1));
  if (argv[0] === 'install') return (await import('./install.js')).runInstall(argv.slice(1));
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (argv.includes('--version')) return printVersion(argv.filter((a) => a !== '--version'));
  // --json belongs to `check` alone, not to the shared option set.
  const json = argv.includes('--json');
  let command: string;
  let config;
  try {
    const args = parseArgs(argv.filter((a) => a !== '--json'));
    command = args.rest[0] ?? 'daemon';
    const extra = args.rest.slice(1);
    if (!['daemon', 'config', 'check'].includes(command)) throw new ConfigError(`unknown command "${command}" (see --help)`);
    if (extra.length > 0) throw new ConfigError(`unexpected argument "${extra[0]}" (see --help)`);
    if (json && command !== 'check') throw new ConfigError('--json goes with the check command only');
    config = await loadConfig(args.flags);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`gvisor-cri: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (command === 'config') {
    process.stdout.write(configToToml(config));
    return 0;
  }
  if (command === 'check') return (await import('./check.js')).runCheck(config, { json });
  const logger = createLogger(config.logLevel);
  try {
    await (await import('./daemon.js')).runDaemon(config, logger);
    return 0;
  } catch (err) {
    logger.fatal({ err }, 'gvisor-cri failed to start');
    process.stderr.write(`gvisor-cri: ${(err as Error).message}\n`);
    return 1;
  }
}

/**
 * `--version`: runsc is the configured one (flags, then the config file). A
 * bad configuration does not stop it: the default runsc path is asked instead,
 * so an operator can always learn what is installed.
 */
async function printVersion(argv: string[]): Promise<number> {
  let runsc = defaultConfig().runsc;
  try {
    runsc = (await loadConfig(parseArgs(argv).flags)).runsc;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
  }
  const v = await versionInfo(runsc);
  process.stdout.write(`gvisor-cri ${v.version}\ncommit: ${v.commit}\nnode: ${v.node}\nrunsc: ${v.runscVersion} (${runsc})\n`);
  return 0;
}
