import { accessSync, constants } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** One plugin entry of a network configuration list, as the CNI spec defines it. */
export interface CniPluginConf {
  type: string;
  capabilities?: Record<string, boolean>;
  ipam?: { type?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** A network configuration list (a single-plugin `.conf` is wrapped into one). */
export interface CniConfList {
  cniVersion: string;
  name: string;
  plugins: CniPluginConf[];
  disableCheck?: boolean;
  [key: string]: unknown;
}

/** The config in force: a usable list and where it came from, or why there is none. */
export type ConfigState = { ok: true; list: CniConfList; source: string } | { ok: false; message: string };

/** CNI spec versions whose configs and results this module understands. */
export const SUPPORTED_CNI_VERSIONS: readonly string[] = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

const CONFIG_EXTENSIONS = ['.conflist', '.conf', '.json'];

export const BUILTIN_SOURCE = 'built-in default network';

/** Compares dotted versions numerically ("0.4.0" < "1.0.0"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function checkPlugin(raw: unknown, where: string): CniPluginConf {
  if (!isObject(raw)) throw new Error(`${where}: expected an object`);
  if (typeof raw.type !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(raw.type)) throw new Error(`${where}: "type" must be a plugin name`);
  if (raw.capabilities !== undefined && !isObject(raw.capabilities)) throw new Error(`${where}: "capabilities" must be an object`);
  if (raw.ipam !== undefined && (!isObject(raw.ipam) || (raw.ipam.type !== undefined && typeof raw.ipam.type !== 'string'))) {
    throw new Error(`${where}: "ipam" must be an object with a string "type"`);
  }
  return raw as CniPluginConf;
}

/** Parses and validates one config file's text; errors name what is wrong, the caller names the file. */
export function parseConfig(text: string, fileName: string): CniConfList {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`invalid JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new Error('expected a JSON object');
  // A `.conf` normally holds one plugin; one that carries "plugins" is a list whatever its name says.
  const isList = fileName.endsWith('.conflist') || Array.isArray(raw.plugins);
  if (typeof raw.name !== 'string' || raw.name === '') throw new Error('"name" must be a non-empty string');
  if (typeof raw.cniVersion !== 'string') throw new Error('"cniVersion" must be a string');
  if (!SUPPORTED_CNI_VERSIONS.includes(raw.cniVersion)) {
    throw new Error(`cniVersion "${raw.cniVersion}" is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(', ')})`);
  }
  if (!isList) {
    const plugin = checkPlugin(raw, 'plugin');
    return { cniVersion: raw.cniVersion, name: raw.name, plugins: [plugin] };
  }
  if (!Array.isArray(raw.plugins) || raw.plugins.length === 0) throw new Error('"plugins" must be a non-empty list');
  raw.plugins.forEach((p, i) => checkPlugin(p, `plugins[${i}]`));
  if (raw.disableCheck !== undefined && typeof raw.disableCheck !== 'boolean') throw new Error('"disableCheck" must be a boolean');
  return raw as CniConfList;
}

/** The bridge network used when the node has no CNI config at all. */
export function builtinConfig(bridge: string, subnet: string, ipamDataDir: string): CniConfList {
  return {
    cniVersion: '1.0.0',
    name: 'gvisor-cri-default',
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: ipamDataDir },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'loopback' },
    ],
  };
}

/**
 * Loads the lexicographically first config file of confDir. A broken first
 * file makes the network not ready rather than silently using another: the
 * operator meant that one. The built-in network applies only to an empty dir.
 */
export async function loadConfig(confDir: string, builtin: (() => CniConfList) | undefined): Promise<ConfigState> {
  let names: string[];
  try {
    names = (await readdir(confDir)).filter((n) => CONFIG_EXTENSIONS.some((e) => n.endsWith(e))).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { ok: false, message: `cannot read CNI config dir ${confDir}: ${(err as Error).message}` };
    names = [];
  }
  const first = names[0];
  if (first === undefined) {
    if (builtin) return { ok: true, list: builtin(), source: BUILTIN_SOURCE };
    return { ok: false, message: `no network config found in ${confDir}` };
  }
  const file = join(confDir, first);
  try {
    return { ok: true, list: parseConfig(await readFile(file, 'utf8'), first), source: file };
  } catch (err) {
    return { ok: false, message: `CNI config ${file}: ${(err as Error).message}` };
  }
}

/** The first executable named type in binDirs. */
export function findPlugin(binDirs: readonly string[], type: string): string | undefined {
  for (const dir of binDirs) {
    const path = join(dir, type);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not in this dir
    }
  }
  return undefined;
}

/** Every plugin binary the list needs (its plugins and their IPAM plugins). */
export function requiredPlugins(list: CniConfList): string[] {
  const out = new Set<string>();
  for (const p of list.plugins) {
    out.add(p.type);
    if (typeof p.ipam?.type === 'string' && p.ipam.type !== '') out.add(p.ipam.type);
  }
  return [...out];
}

/** A message naming the first plugin the list needs that no bin dir holds. */
export function missingPluginMessage(list: CniConfList, binDirs: readonly string[]): string | undefined {
  const missing = requiredPlugins(list).find((t) => findPlugin(binDirs, t) === undefined);
  return missing === undefined ? undefined : `CNI plugin "${missing}" not found in ${binDirs.join(', ')}`;
}
