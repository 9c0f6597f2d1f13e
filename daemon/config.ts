import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { allowlistEntryProblem } from '../runtime/runsc/gvisor-flags.js';
import { DEFAULT_CGROUP_PARENT, DEFAULT_SANDBOX_OVERHEAD, sandboxCgroupPath, type CgroupDriver } from '../runtime/cgroups/index.js';

/** How one registry host is reached (see README, "Registries"). */
export interface RegistryConfig {
  /** Endpoints tried in order before the registry itself, e.g. "http://127.0.0.1:5000". */
  mirrors: string[];
  /** Plain HTTP allowed for this host (credentials included). */
  insecure: boolean;
  /** Extra CA bundle (PEM) that signs this host's certificate. */
  ca_file?: string;
  /**
   * Credentials for this host as an endpoint, as containerd's per-host auth:
   * a mirror gets only these, never the pull's own AuthConfig; for the
   * registry itself they stand in when the pull brings none.
   */
  username?: string;
  password?: string;
  /** base64 of "user:password" (instead of username and password). */
  auth?: string;
}

/** Written instead of a secret when the config is printed or served (Status verbose). */
export const REDACTED = '<redacted>';

export interface Config {
  config: string;
  socket: string;
  stateDir: string;
  runDir: string;
  runsc: string;
  runscPlatform: string;
  runscExtraFlags: string[];
  overlayMedium: string;
  gvisorFlagAllowlist: string[];
  cgroupDriver: 'cgroupfs' | 'systemd';
  cgroupParent: string;
  sandboxOverheadMemory: number;
  sandboxOverheadCpu: number;
  traceSessionConfig: string;
  cniConfDir: string;
  cniBinDirs: string[];
  cniPluginTimeout: number;
  defaultNetwork: boolean;
  defaultNetworkBridge: string;
  defaultNetworkSubnet: string;
  streamAddress: string;
  streamPort: number;
  streamTlsCert: string;
  streamTlsKey: string;
  maxConcurrentDownloads: number;
  pullProgressTimeout: number;
  imageMaxLayers: number;
  imageMaxUnpackedMib: number;
  maxStreamSessions: number;
  metricsAddress: string;
  metricsPort: number;
  auditLog: string;
  logLevel: string;
  registries: Record<string, RegistryConfig>;
}

type Kind = 'string' | 'path' | 'int' | 'bool' | 'list' | 'enum' | 'address' | 'registries';

/** One configuration option: its one definition feeds the TOML file, the CLI flags and the README table. */
export interface OptionDef {
  /** CLI flag name without dashes; the TOML key is the same with `_` for `-`. */
  name: string;
  field: keyof Config;
  kind: Kind;
  default: Config[keyof Config];
  doc: string;
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** Only settable on the command line (the config file cannot name itself). */
  flagOnly?: boolean;
  /** Only settable in the config file (structured values). */
  fileOnly?: boolean;
  /** A path option that may be empty (to turn its feature off). */
  emptyOk?: boolean;
}

export const DEFAULT_CONFIG_PATH = '/etc/gvisor-cri/config.toml';

export const OPTIONS: readonly OptionDef[] = [
  { name: 'config', field: 'config', kind: 'path', default: DEFAULT_CONFIG_PATH, doc: 'TOML config file; a missing file means defaults', flagOnly: true },
  { name: 'socket', field: 'socket', kind: 'path', default: '/run/gvisor-cri/gvisor-cri.sock', doc: 'unix socket kubelet connects to: mode 0660 for the daemon\'s user and group (root), and in the run dir (the default, mode 0700) only root can reach it' },
  { name: 'state-dir', field: 'stateDir', kind: 'path', default: '/var/lib/gvisor-cri', doc: 'persistent state: images, snapshots, pod and container records' },
  { name: 'run-dir', field: 'runDir', kind: 'path', default: '/run/gvisor-cri', doc: 'volatile state: runsc root, network namespaces, FIFOs' },
  { name: 'runsc', field: 'runsc', kind: 'path', default: '/usr/bin/runsc', doc: 'path of the runsc binary' },
  { name: 'runsc-platform', field: 'runscPlatform', kind: 'enum', choices: ['systrap', 'ptrace', 'kvm'], default: 'systrap', doc: 'gVisor platform passed to runsc --platform' },
  { name: 'runsc-extra-flags', field: 'runscExtraFlags', kind: 'list', default: [], doc: 'extra global runsc flags for every sandbox, e.g. "--debug"' },
  { name: 'overlay-medium', field: 'overlayMedium', kind: 'enum', choices: ['memory', 'dir'], default: 'memory', doc: 'where a container\'s rootfs writes live inside gVisor (--overlay2=root:MEDIUM); "dir" keeps them on disk under the run dir' },
  { name: 'gvisor-flag-allowlist', field: 'gvisorFlagAllowlist', kind: 'list', default: [], doc: 'runsc flags a pod may set with a dev.gvisor.flag.NAME pod annotation, e.g. "net-raw"; any other such annotation is refused. Empty (default): none, as each allowed flag lets every pod loosen its own sandbox (see "Sandbox defaults")' },
  { name: 'cgroup-driver', field: 'cgroupDriver', kind: 'enum', choices: ['cgroupfs', 'systemd'], default: 'cgroupfs', doc: 'how kubelet names pod cgroups (its cgroupDriver; reported in RuntimeConfig): "cgroupfs" parents are paths like /kubepods/burstable/pod<uid>, "systemd" parents are slices like kubepods-burstable-pod<uid>.slice (see "Resources and cgroups")' },
  { name: 'cgroup-parent', field: 'cgroupParent', kind: 'string', default: DEFAULT_CGROUP_PARENT, doc: 'cgroup that holds the sandboxes of pods with no cgroup_parent (a path under each hierarchy\'s root for cgroupfs, a slice name for systemd; "gvisor-cri" becomes /gvisor-cri or gvisor-cri.slice)' },
  { name: 'sandbox-overhead-memory', field: 'sandboxOverheadMemory', kind: 'int', min: 0, max: 1_048_576, default: DEFAULT_SANDBOX_OVERHEAD.memoryBytes / (1024 * 1024), doc: 'MiB added to the sum of a pod\'s container memory limits for its sentry and gofers when every container has a limit (a pod\'s RuntimeClass overhead replaces it)' },
  { name: 'sandbox-overhead-cpu', field: 'sandboxOverheadCpu', kind: 'int', min: 0, max: 1_024_000, default: DEFAULT_SANDBOX_OVERHEAD.cpuMillis, doc: 'CPU millicores added to the sum of a pod\'s container CPU quotas (and shares) for its sentry and gofers when every container has a quota (a pod\'s RuntimeClass overhead replaces it)' },
  { name: 'trace-session-config', field: 'traceSessionConfig', kind: 'path', emptyOk: true, default: '', doc: 'gVisor trace session (runsc --pod-init-config JSON) every new sandbox starts with, e.g. to stream syscall and process events to Falco (empty: none; see "Runtime monitoring")' },
  { name: 'cni-conf-dir', field: 'cniConfDir', kind: 'path', default: '/etc/cni/net.d', doc: 'CNI network configuration directory (watched)' },
  { name: 'cni-bin-dir', field: 'cniBinDirs', kind: 'list', default: ['/opt/cni/bin', '/usr/lib/cni'], doc: 'CNI plugin directories, searched in order (flag: colon-separated)' },
  { name: 'cni-plugin-timeout', field: 'cniPluginTimeout', kind: 'int', min: 1, max: 600, default: 30, doc: 'seconds one CNI plugin call may take; an ADD also ends with its RunPodSandbox call (deadline passed or cancelled)' },
  { name: 'default-network', field: 'defaultNetwork', kind: 'bool', default: true, doc: 'with no CNI config in cni-conf-dir, use a built-in bridge network' },
  { name: 'default-network-bridge', field: 'defaultNetworkBridge', kind: 'string', default: 'gvcri0', doc: 'bridge name of the built-in network' },
  { name: 'default-network-subnet', field: 'defaultNetworkSubnet', kind: 'string', default: '10.88.0.0/16', doc: 'IPv4 subnet of the built-in network' },
  { name: 'stream-address', field: 'streamAddress', kind: 'address', default: '127.0.0.1', doc: 'address the exec/attach/port-forward server binds' },
  { name: 'stream-port', field: 'streamPort', kind: 'int', min: 0, max: 65535, default: 0, doc: 'port of the streaming server (0: any free port)' },
  { name: 'stream-tls-cert', field: 'streamTlsCert', kind: 'string', default: '', doc: 'PEM certificate for the streaming server (empty: plain HTTP)' },
  { name: 'stream-tls-key', field: 'streamTlsKey', kind: 'string', default: '', doc: 'PEM key for stream-tls-cert' },
  { name: 'max-concurrent-downloads', field: 'maxConcurrentDownloads', kind: 'int', min: 1, max: 64, default: 3, doc: 'layers of one pull downloaded at once' },
  { name: 'pull-progress-timeout', field: 'pullProgressTimeout', kind: 'int', min: 1, max: 3600, default: 60, doc: 'seconds a pull may go without receiving a byte before it is aborted' },
  { name: 'image-max-layers', field: 'imageMaxLayers', kind: 'int', min: 1, max: 4096, default: 128, doc: 'layers one image may have; a pull of an image with more fails with RESOURCE_EXHAUSTED before any layer is downloaded' },
  { name: 'image-max-unpacked-mib', field: 'imageMaxUnpackedMib', kind: 'int', min: 1, max: 1048576, default: 16384, doc: 'MiB of uncompressed tar the layers of one image may unpack to in all; an image over it (a decompression bomb) fails the pull with RESOURCE_EXHAUSTED and leaves no snapshot or blob behind' },
  { name: 'max-stream-sessions', field: 'maxStreamSessions', kind: 'int', min: 1, max: 65536, default: 128, doc: 'exec/attach/port-forward sessions open at once on the streaming server; one more is refused with HTTP 429' },
  { name: 'metrics-address', field: 'metricsAddress', kind: 'address', default: '127.0.0.1', doc: 'address the Prometheus metrics endpoint (/metrics) binds' },
  { name: 'metrics-port', field: 'metricsPort', kind: 'int', min: 0, max: 65535, default: 0, doc: 'port of the Prometheus metrics endpoint (0: no endpoint)' },
  { name: 'audit-log', field: 'auditLog', kind: 'path', emptyOk: true, default: '/var/log/gvisor-cri/audit.log', doc: 'JSON-lines audit log of every Exec, ExecSync, Attach and PortForward request (absolute path; empty: none)' },
  { name: 'log-level', field: 'logLevel', kind: 'enum', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], default: 'info', doc: 'daemon log level' },
  { name: 'registries', field: 'registries', kind: 'registries', default: {}, doc: 'per-registry-host table: mirrors, insecure, ca_file, username/password or auth (see "Registries")', fileOnly: true },
];

/** A configuration problem: one line naming the key and what is wrong. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const tomlKey = (o: OptionDef): string => o.name.replaceAll('-', '_');

export function defaultConfig(): Config {
  const out: Record<string, unknown> = {};
  for (const o of OPTIONS) out[o.field] = structuredClone(o.default);
  return out as unknown as Config;
}

function checkValue(o: OptionDef, raw: unknown, where: string): Config[keyof Config] {
  const bad = (what: string): never => {
    throw new ConfigError(`${where} ${o.name}: ${what}`);
  };
  switch (o.kind) {
    case 'string':
    case 'path':
    case 'address':
    case 'enum': {
      if (typeof raw !== 'string') return bad(`expected a string, got ${JSON.stringify(raw)}`);
      if (o.kind === 'path' && !raw.startsWith('/') && !(o.emptyOk && raw === '')) return bad(`must be an absolute path, got "${raw}"`);
      if (o.kind === 'enum' && !o.choices!.includes(raw)) return bad(`must be one of ${o.choices!.join(', ')}, got "${raw}"`);
      if (o.kind === 'address' && isIP(raw) === 0 && raw !== 'localhost') return bad(`must be an IP address, got "${raw}"`);
      if (o.field === 'cgroupParent' && !/^[A-Za-z0-9_.\/-]+$/.test(raw)) return bad(`must be a cgroup path or slice name (letters, digits, "_", "-", ".", "/"), got "${raw}"`);
      return raw;
    }
    case 'int': {
      const n = typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : raw;
      if (typeof n === 'bigint') return checkValue(o, Number(n), where);
      if (typeof n !== 'number' || !Number.isInteger(n)) return bad(`expected an integer, got ${JSON.stringify(raw)}`);
      if ((o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) return bad(`must be between ${o.min} and ${o.max}, got ${n}`);
      return n;
    }
    case 'bool': {
      if (raw === 'true' || raw === true) return true;
      if (raw === 'false' || raw === false) return false;
      return bad(`expected true or false, got ${JSON.stringify(raw)}`);
    }
    case 'list': {
      const items = typeof raw === 'string' ? (o.field === 'cniBinDirs' ? raw.split(':') : raw.split(/\s+/)).filter((s) => s !== '') : raw;
      if (!Array.isArray(items) || items.some((s) => typeof s !== 'string')) return bad(`expected a list of strings, got ${JSON.stringify(raw)}`);
      if (o.field === 'cniBinDirs' && items.some((s) => !String(s).startsWith('/'))) return bad('every directory must be an absolute path');
      const flagProblem = o.field === 'gvisorFlagAllowlist' ? (items as string[]).map(allowlistEntryProblem).find((p) => p !== undefined) : undefined;
      if (flagProblem) return bad(flagProblem);
      return items as string[];
    }
    case 'registries':
      return checkRegistries(raw, `${where} ${o.name}`);
  }
}

function checkRegistries(raw: unknown, where: string): Record<string, RegistryConfig> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${where}: expected a table of registry hosts`);
  const out: Record<string, RegistryConfig> = {};
  for (const [host, value] of Object.entries(raw)) {
    const at = `${where}."${host}"`;
    if (!/^[A-Za-z0-9.-]+(:\d+)?$/.test(host)) throw new ConfigError(`${at}: not a registry host[:port]`);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(`${at}: expected a table`);
    const entry: RegistryConfig = { mirrors: [], insecure: false };
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (k === 'mirrors') {
        if (!Array.isArray(v) || v.some((m) => typeof m !== 'string' || !/^https?:\/\/[^/]+/.test(m))) {
          throw new ConfigError(`${at}.mirrors: expected a list of http:// or https:// URLs`);
        }
        entry.mirrors = v as string[];
      } else if (k === 'insecure') {
        if (typeof v !== 'boolean') throw new ConfigError(`${at}.insecure: expected true or false`);
        entry.insecure = v;
      } else if (k === 'ca_file') {
        if (typeof v !== 'string' || !v.startsWith('/')) throw new ConfigError(`${at}.ca_file: must be an absolute path`);
        entry.ca_file = v;
      } else if (k === 'username' || k === 'password' || k === 'auth') {
        if (typeof v !== 'string' || v === '') throw new ConfigError(`${at}.${k}: expected a non-empty string`);
        entry[k] = v;
      } else {
        throw new ConfigError(`${at}: unknown key "${k}" (known: mirrors, insecure, ca_file, username, password, auth)`);
      }
    }
    if (entry.auth !== undefined && (entry.username !== undefined || entry.password !== undefined)) {
      throw new ConfigError(`${at}: give either auth or username and password, not both`);
    }
    if ((entry.username === undefined) !== (entry.password === undefined)) throw new ConfigError(`${at}: username and password go together`);
    if (entry.auth !== undefined && !Buffer.from(entry.auth, 'base64').toString('utf8').includes(':')) {
      throw new ConfigError(`${at}.auth: not base64 of "user:password"`);
    }
    out[host] = entry;
  }
  checkMirrorCredentials(out, where);
  return out;
}

function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/**
 * A mirror reached over plain HTTP must not be given credentials, unless the
 * operator said its host is insecure or it is on loopback: refused here so the
 * mistake shows at start, not as a failing pull.
 */
function checkMirrorCredentials(registries: Record<string, RegistryConfig>, where: string): void {
  for (const [host, entry] of Object.entries(registries)) {
    for (const mirror of entry.mirrors) {
      const url = new URL(mirror);
      const own = registries[url.host];
      if (url.protocol !== 'http:' || !own || (own.username === undefined && own.auth === undefined)) continue;
      if (!own.insecure && !isLoopbackHost(url.hostname)) {
        throw new ConfigError(`${where}."${host}".mirrors: ${mirror} is plain HTTP but registries."${url.host}" has credentials; use https or set insecure = true for "${url.host}"`);
      }
    }
  }
}

/** Applies a parsed TOML document on top of `base`; unknown keys are errors, not silently ignored. */
export function applyToml(base: Config, doc: Record<string, unknown>, file: string): Config {
  const out = structuredClone(base) as unknown as Record<string, unknown>;
  for (const [key, raw] of Object.entries(doc)) {
    const o = OPTIONS.find((opt) => tomlKey(opt) === key && !opt.flagOnly);
    if (!o) throw new ConfigError(`${file}: unknown key "${key}"`);
    out[o.field] = checkValue(o, raw, `${file}:`);
  }
  return out as unknown as Config;
}

export function parseTomlConfig(text: string, file: string, base: Config = defaultConfig()): Config {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${file}: invalid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  return applyToml(base, doc, file);
}

/** The effective config as TOML, every option written out (what `gvisor-cri config` prints). */
export function configToToml(config: Config): string {
  const doc: Record<string, unknown> = {};
  for (const o of OPTIONS) {
    if (o.flagOnly) continue;
    const value = config[o.field];
    if (o.kind === 'registries') {
      const regs: Record<string, unknown> = {};
      for (const [host, r] of Object.entries(value as Record<string, RegistryConfig>)) {
        // The printed config reaches logs and CRI clients (Status verbose): secrets stay out.
        regs[host] = { ...r, ...(r.password !== undefined && { password: REDACTED }), ...(r.auth !== undefined && { auth: REDACTED }) };
      }
      doc[tomlKey(o)] = regs;
    } else {
      doc[tomlKey(o)] = value;
    }
  }
  return stringifyToml(doc) + '\n';
}

export interface ParsedArgs {
  /** Flag values as given, by option name. */
  flags: Map<string, string>;
  /** Words that are not flags (the subcommand and its arguments). */
  rest: string[];
}

/** Splits `--name value` / `--name=value` flags from the other words. */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const flags = new Map<string, string>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') {
      rest.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const o = OPTIONS.find((opt) => opt.name === name && !opt.fileOnly);
    if (!o) throw new ConfigError(`unknown flag --${name} (see --help)`);
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (o.kind === 'bool' && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--') || !/^(true|false)$/.test(argv[i + 1]!))) value = 'true';
    else {
      if (i + 1 >= argv.length) throw new ConfigError(`flag --${name} needs a value`);
      value = argv[++i]!;
    }
    flags.set(name, value);
  }
  return { flags, rest };
}

/** The effective config: defaults, then the TOML file (if present), then flags. */
export async function loadConfig(flags: Map<string, string>): Promise<Config> {
  let config = defaultConfig();
  const configOpt = OPTIONS.find((o) => o.name === 'config')!;
  const file = flags.has('config') ? (checkValue(configOpt, flags.get('config'), 'flag') as string) : DEFAULT_CONFIG_PATH;
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // A missing default file means defaults; a file named explicitly must exist.
    if (code !== 'ENOENT' || flags.has('config')) throw new ConfigError(`config ${file}: ${(err as Error).message}`);
  }
  if (text !== undefined) config = parseTomlConfig(text, file, config);
  config.config = file;
  const out = config as unknown as Record<string, unknown>;
  for (const [name, raw] of flags) {
    if (name === 'config') continue;
    const o = OPTIONS.find((opt) => opt.name === name)!;
    out[o.field] = checkValue(o, raw, 'flag');
  }
  checkCgroupParent(config.cgroupDriver, config.cgroupParent);
  return config;
}

/** The daemon-wide cgroup parent must be one the driver can place sandboxes under (e.g. a slice name for systemd). */
function checkCgroupParent(driver: CgroupDriver, parent: string): void {
  try {
    sandboxCgroupPath(driver, undefined, parent, '0'.repeat(64));
  } catch (err) {
    throw new ConfigError(`cgroup-parent: ${(err as Error).message} (cgroup-driver ${driver})`);
  }
}

/** The README's config table, generated from OPTIONS so it cannot drift. */
export function optionsMarkdownTable(): string {
  const rows = OPTIONS.map((o) => {
    const def = o.kind === 'registries' ? '{}' : JSON.stringify(o.default);
    const flag = o.fileOnly ? '' : `\`--${o.name}\``;
    const key = o.flagOnly ? '' : `\`${tomlKey(o)}\``;
    return `| ${flag} | ${key} | \`${def}\` | ${o.doc} |`;
  });
  return ['| flag | TOML key | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
