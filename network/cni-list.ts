import { compareVersions, type CniConfList, type CniPluginConf } from './cni-config.js';
import { CniPluginError, invokePlugin, type CniCommand, type PluginCall } from './cni-plugin.js';

/**
 * Runs a network configuration list the way the CNI spec describes: ADD in
 * order with each plugin's result as the next one's prevResult, DEL in
 * reverse, CHECK in order against the cached result.
 */

/** Values for the capabilities plugins may declare (CNI "conventions"). */
export interface RuntimeConfig {
  portMappings?: Array<{ hostPort: number; containerPort: number; protocol: string; hostIP: string }>;
  bandwidth?: { ingressRate?: number; ingressBurst?: number; egressRate?: number; egressBurst?: number };
  dns?: { servers: string[]; searches: string[]; options: string[] };
}

/** One run of a whole plugin list: every plugin call's fields but the command, plus the capability values. */
export interface ListCall extends Omit<PluginCall, 'command'> {
  runtimeConfig: RuntimeConfig;
}

/** The stdin one plugin of the list receives. */
export function pluginConf(list: CniConfList, plugin: CniPluginConf, runtimeConfig: RuntimeConfig, prevResult: unknown): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  const rc: Record<string, unknown> = {};
  for (const [cap, enabled] of Object.entries(plugin.capabilities ?? {})) {
    const value = (runtimeConfig as Record<string, unknown>)[cap];
    if (enabled === true && value !== undefined) rc[cap] = value;
  }
  if (Object.keys(rc).length > 0) conf.runtimeConfig = rc;
  else delete conf.runtimeConfig;
  if (prevResult !== undefined) conf.prevResult = prevResult;
  else delete conf.prevResult;
  return conf;
}

function call(command: CniCommand, c: ListCall) {
  return { command, containerId: c.containerId, netns: c.netns, ifName: c.ifName, args: c.args, binDirs: c.binDirs, timeoutMs: c.timeoutMs, signal: c.signal, launcher: c.launcher };
}

/** ADD through the whole list; resolves to the last plugin's result. */
export async function addList(list: CniConfList, c: ListCall): Promise<unknown> {
  let prev: unknown;
  for (const plugin of list.plugins) {
    prev = await invokePlugin(plugin.type, pluginConf(list, plugin, c.runtimeConfig, prev), call('ADD', c));
  }
  return prev;
}

/** Whether this spec version hands the cached result to DEL and supports CHECK. */
export const hasPrevResultOnDel = (version: string): boolean => compareVersions(version, '0.4.0') >= 0;

/**
 * DEL through the list in reverse. Every plugin is asked even after one
 * fails, so that one broken plugin does not leak what the others hold; the
 * first failure is then thrown.
 */
export async function delList(list: CniConfList, c: ListCall, cachedResult: unknown): Promise<void> {
  const prev = hasPrevResultOnDel(list.cniVersion) ? cachedResult : undefined;
  let first: CniPluginError | Error | undefined;
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await invokePlugin(plugin.type, pluginConf(list, plugin, c.runtimeConfig, prev), call('DEL', c));
    } catch (err) {
      first ??= err as Error;
    }
  }
  if (first) throw first;
}

/** CHECK through the list (spec >= 0.4.0 only; the caller decides). */
export async function checkList(list: CniConfList, c: ListCall, cachedResult: unknown): Promise<void> {
  for (const plugin of list.plugins) {
    await invokePlugin(plugin.type, pluginConf(list, plugin, c.runtimeConfig, cachedResult), call('CHECK', c));
  }
}
