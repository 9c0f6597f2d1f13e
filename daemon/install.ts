/**
 * `gvisor-cri install`: puts this installation on a node as a systemd service.
 * Writes the unit (always: it only names this node binary and install dir)
 * and a default config (only when none exists: it is the operator's file).
 * Starts nothing; prints what it did and what to run next.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../common/index.js';
import { configToToml, defaultConfig, DEFAULT_CONFIG_PATH } from './config.js';

/** This installation: the directory holding bin/gvisor-cri, dist/ and dist-files/ (from source or from dist/). */
export const INSTALL_DIR = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url)).replace(/\/$/, '');

export const UNIT_PATH = '/etc/systemd/system/gvisor-cri.service';

const USAGE = `Usage: gvisor-cri install [--root DIR] [--prefix DIR]

Writes ${UNIT_PATH} (always) and ${DEFAULT_CONFIG_PATH} (only if missing).
  --root DIR    write below DIR instead of / (image builders, tests)
  --prefix DIR  where this installation lives on the target (default: ${INSTALL_DIR})
`;

/** A word for a systemd command line: % doubled (specifier escape), quoted if it has spaces or quotes. */
export function systemdWord(word: string): string {
  const escaped = word.replaceAll('%', '%%');
  return /[\s"'\\]/.test(escaped) ? `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"` : escaped;
}

async function template(name: string): Promise<string> {
  return readFile(join(INSTALL_DIR, 'dist-files', name), 'utf8');
}

/**
 * V8 flags the daemon runs with. A 2 MiB young generation (16 MiB by
 * default) keeps an idle daemon under 80 MiB RSS instead of ~88 MiB; its
 * allocations are short-lived RPC and stream buffers, so the extra
 * scavenges cost little. A pull allocates its layers' bytes as buffers
 * outside the heap (~80 MiB for 40 MiB of layers). Counted against the old
 * generation's own limit, sized for a ~19 MiB heap, they set off a full
 * mark-compact every ~10 MiB: 7 per pull, half its CPU. Counted in the
 * global limit, with the old generation starting at 64 MiB, the young
 * collections free them: under 0.5 mark-compacts per pull, for a few MiB
 * of PSS. bin/gvisor-cri's launcher line passes the same flags.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--external-memory-accounted-in-global-limit', '--initial-heap-size=64'];

export async function renderUnit(nodePath: string, installDir: string): Promise<string> {
  return (await template('gvisor-cri.service')).replace('@NODE@', [nodePath, ...DAEMON_NODE_FLAGS].map(systemdWord).join(' ')).replace('@INSTALL_DIR@/bin/gvisor-cri', systemdWord(`${installDir}/bin/gvisor-cri`));
}

export async function renderDefaultConfig(): Promise<string> {
  return (await template('config.toml.in')).replace('@CONFIG@', configToToml(defaultConfig()).trimEnd());
}

/** Atomic, not durable (common/atomic-write.ts): rewritten on every run, read by systemd only after daemon-reload. */
async function writeAtomic(path: string, content: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, content, { durability: 'atomic', mode: 0o644 });
}

/** Writes the config unless one exists; true if written. Exclusive create, so a concurrent writer's file wins too. */
async function writeIfMissing(path: string, content: string): Promise<boolean> {
  await mkdir(dirname(path), { recursive: true });
  try {
    await writeFile(path, content, { mode: 0o644, flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

function parse(argv: readonly string[]): { root: string; prefix: string } | string {
  let root = '/';
  let prefix = INSTALL_DIR;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    if (name !== '--root' && name !== '--prefix') return `unknown argument "${arg}"`;
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === '') return `${name} needs a directory`;
    if (name === '--root') root = resolve(value);
    else if (!isAbsolute(value)) return `--prefix must be an absolute path, got "${value}"`;
    else prefix = value.replace(/\/+$/, '');
  }
  return { root, prefix };
}

/** Runs `gvisor-cri install ARGV`; exit code 0 done, 1 a write failed, 2 bad usage. */
export async function runInstall(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts = parse(argv);
  if (typeof opts === 'string') {
    process.stderr.write(`gvisor-cri install: ${opts} (see --help)\n`);
    return 2;
  }
  const unitPath = join(opts.root, UNIT_PATH);
  const configPath = join(opts.root, DEFAULT_CONFIG_PATH);
  try {
    await writeAtomic(unitPath, await renderUnit(process.execPath, opts.prefix));
    process.stdout.write(`written ${unitPath}\n`);
    const written = await writeIfMissing(configPath, await renderDefaultConfig());
    process.stdout.write(written ? `written ${configPath}\n` : `kept ${configPath} (exists; not overwritten)\n`);
  } catch (err) {
    process.stderr.write(`gvisor-cri install: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(
    'Nothing was started. Next:\n' +
      '  systemctl daemon-reload && systemctl enable --now gvisor-cri\n' +
      '  then start kubelet with --container-runtime-endpoint=unix:///run/gvisor-cri/gvisor-cri.sock\n',
  );
  return 0;
}
