import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyedLock } from '../common/index.js';
import {
  CriError,
  alreadyExists,
  deadlineExceeded,
  failedPrecondition,
  GrpcStatus,
  internal,
  invalidArgument,
  notFound,
  wrapError,
} from '../cri-api/errors.js';
import { CniCache, type CacheEntry } from './cni-cache.js';
import { missingPluginMessage } from './cni-config.js';
import { addList, checkList, delList, hasPrevResultOnDel, type ListCall } from './cni-list.js';
import { ConfigWatch } from './config-watch.js';
import { CniPluginError } from './cni-plugin.js';
import { podAddresses, podIps, podRoutes } from './cni-result.js';
import { createNetns, createPlaceholderNetns, netnsExists, removeNetns, restoreAddresses, restoreRoutes } from './netns.js';
import { checkRequest, POD_ID, runtimeConfigFor } from './pod-request.js';
import type { NetworkOptions, NetworkStatus, PodNetworkRequest, PodNetworkResult } from './types.js';

const IFNAME = 'eth0';
/** Delays before the 2nd and 3rd DEL attempt of a teardown. */
const DEL_RETRY_DELAYS_MS = [250, 1000];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Maps a failure of one step to a CriError whose message says which pod and which step. */
function stepError(err: unknown, context: string): CriError {
  if (err instanceof CriError) return wrapError(err, context);
  if (err instanceof CniPluginError) {
    if (err.failure === 'not-found') return failedPrecondition(`${context}: ${err.message}`);
    if (err.failure === 'timeout') return deadlineExceeded(`${context}: ${err.message}`);
    // The caller's own status (its deadline, or it gave up) says why the plugin was stopped.
    if (err.failure === 'cancelled') return new CriError(err.reason instanceof CriError ? err.reason.code : GrpcStatus.CANCELLED, `${context}: ${err.message}`, { cause: err });
  }
  return internal(`${context}: ${err instanceof Error ? err.message : String(err)}`, err);
}

const podLabel = (e: CacheEntry): string => {
  const arg = (k: string): string | undefined => e.args.find(([key]) => key === k)?.[1];
  const name = arg('K8S_POD_NAME');
  return name ? `${arg('K8S_POD_NAMESPACE')}/${name} (${e.podId})` : e.podId;
};

/**
 * Pod networking: one network namespace per pod, wired by the node's CNI
 * plugins. Knows the CNI config in force (watching its directory) and every
 * pod it set up (an on-disk cache that survives restarts).
 */
export class NetworkManager {
  /** Serialises work on one pod; different pods proceed in parallel. */
  private readonly locks = new KeyedLock();
  private readonly config: ConfigWatch;

  private constructor(
    private readonly opts: NetworkOptions,
    private readonly cache: CniCache,
    private readonly netnsDir: string,
  ) {
    this.config = new ConfigWatch(opts);
  }

  /** Loads the CNI config and the result cache, and starts watching the config dir. */
  static async open(opts: NetworkOptions): Promise<NetworkManager> {
    if (opts.binDirs.length === 0) throw invalidArgument('network: at least one CNI bin dir is needed');
    if (!(opts.pluginTimeoutMs > 0)) throw invalidArgument(`network: plugin timeout must be positive, got ${opts.pluginTimeoutMs}`);
    const netnsDir = join(opts.runDir, 'netns');
    const cache = new CniCache(join(opts.stateDir, 'cni', 'cache'));
    try {
      await mkdir(opts.confDir, { recursive: true });
      await mkdir(netnsDir, { recursive: true, mode: 0o755 });
      for (const bad of await cache.load()) opts.logger.warn({ file: bad }, 'ignoring unreadable CNI cache entry');
    } catch (err) {
      throw stepError(err, 'network: prepare directories');
    }
    const m = new NetworkManager(opts, cache, netnsDir);
    await m.config.start();
    return m;
  }

  /** Re-reads the config dir now (the watcher does this on every change). */
  reload(): Promise<void> {
    return this.config.reload();
  }

  /** The CRI NetworkReady condition. */
  status(): NetworkStatus {
    return this.config.status();
  }

  private listCall(e: CacheEntry, netns: string, signal?: AbortSignal): ListCall {
    return { containerId: e.podId, netns, ifName: e.ifName, args: e.args, binDirs: this.opts.binDirs, timeoutMs: this.opts.pluginTimeoutMs, signal, runtimeConfig: e.runtimeConfig, launcher: this.opts.launcher };
  }

  /** Creates the pod's netns and runs CNI ADD; on any failure undoes both and throws. */
  async setup(req: PodNetworkRequest, signal?: AbortSignal): Promise<PodNetworkResult> {
    await this.prepare(req);
    return this.add(req.podId, signal);
  }

  /**
   * The first half of setup: writes the pod's cache entry (before anything
   * is made), then creates its netns, empty but for loopback. A caller may
   * start a sandbox in it while `add` runs; on failure undoes what it made.
   */
  async prepare(req: PodNetworkRequest): Promise<{ netnsPath: string }> {
    checkRequest(req);
    const ctx = `set up network for pod ${req.namespace}/${req.name} (${req.podId})`;
    return this.locks.run(req.podId, async () => {
      if (this.cache.get(req.podId)) throw alreadyExists(`${ctx}: already set up; tear it down first`);
      const s = this.config.current;
      if (!s.ok) throw failedPrecondition(`${ctx}: network not ready: ${s.message}`);
      const missing = missingPluginMessage(s.list, this.opts.binDirs);
      if (missing) throw failedPrecondition(`${ctx}: ${missing}`);
      const entry: CacheEntry = {
        format: 1,
        podId: req.podId,
        netnsPath: join(this.netnsDir, req.podId),
        ifName: IFNAME,
        args: [
          ['IgnoreUnknown', '1'],
          ['K8S_POD_NAMESPACE', req.namespace],
          ['K8S_POD_NAME', req.name],
          ['K8S_POD_INFRA_CONTAINER_ID', req.podId],
          ['K8S_POD_UID', req.uid],
        ],
        runtimeConfig: runtimeConfigFor(req),
        config: s.list,
        configSource: s.source,
      };
      // The entry goes to disk before anything is created, so a crash at any later point leaves enough to undo it.
      let step = 'write CNI cache';
      try {
        await this.cache.put(entry);
        step = 'create network namespace';
        await removeNetns(entry.netnsPath, this.opts.launcher);
        await createNetns(entry.netnsPath, this.opts.launcher);
        return { netnsPath: entry.netnsPath };
      } catch (err) {
        throw await this.failed(entry, err, `${ctx}: ${step}`);
      }
    });
  }

  /**
   * The second half of setup: CNI ADD in the netns `prepare` made; on failure
   * undoes both. `signal` stops the plugin running (as containerd and CRI-O
   * bound CNI by the RunPodSandbox call); the undo's DEL does not obey it.
   */
  async add(podId: string, signal?: AbortSignal): Promise<PodNetworkResult> {
    return this.locks.run(podId, async () => {
      const entry = this.cache.get(podId);
      if (!entry) throw failedPrecondition(`CNI ADD for pod ${podId}: its network namespace was not prepared`);
      if (entry.result) throw alreadyExists(`CNI ADD for pod ${podLabel(entry)}: already set up; tear it down first`);
      const started = Date.now();
      let step = `CNI ADD of network "${entry.config.name}" (${entry.configSource})`;
      try {
        const result = await addList(entry.config, this.listCall(entry, entry.netnsPath, signal));
        step = 'read CNI result';
        const ips = podIps(result, IFNAME);
        if (ips.length === 0) throw new Error(`no IP address for ${IFNAME} in the result: ${JSON.stringify(result)}`);
        step = 'write CNI cache';
        await this.cache.put({ ...entry, result, ips });
        this.opts.logger.info({ pod: podLabel(entry), ips, netns: entry.netnsPath, ms: Date.now() - started }, 'pod network set up');
        return { netnsPath: entry.netnsPath, ips, interfaceName: IFNAME };
      } catch (err) {
        throw await this.failed(entry, err, `set up network for pod ${podLabel(entry)}: ${step}`);
      }
    });
  }

  /** Undoes a failed setup step and says how far the undo got. */
  private async failed(entry: CacheEntry, err: unknown, context: string): Promise<CriError> {
    const undone = await this.rollback(entry);
    const e = stepError(err, context);
    if (undone) return e;
    return new CriError(e.code, `${e.message} (undo incomplete: teardown of this pod, or recover after a restart, finishes it)`, { cause: err });
  }

  /** Undoes a failed setup; false when CNI DEL failed and the cache entry is kept for a later teardown. */
  private async rollback(entry: CacheEntry): Promise<boolean> {
    try {
      const alive = await netnsExists(entry.netnsPath);
      await this.delWithRetries(entry, alive ? entry.netnsPath : '');
      await removeNetns(entry.netnsPath, this.opts.launcher);
      await this.cache.remove(entry.podId);
      return true;
    } catch (err) {
      this.opts.logger.error({ podId: entry.podId, err: (err as Error).message }, 'undoing a failed pod network setup failed');
      return false;
    }
  }

  /**
   * CNI DEL, tried again on failure: a plugin that failed half-way through
   * ADD can trip over its own missing pieces on the first DEL (e.g. bridge
   * removing a masquerade chain it never made) and succeed on the next.
   */
  private async delWithRetries(entry: CacheEntry, netns: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await delList(entry.config, this.listCall(entry, netns), entry.result);
        return;
      } catch (err) {
        const delay = DEL_RETRY_DELAYS_MS[attempt];
        if (delay === undefined) throw stepError(err, `CNI DEL of network "${entry.config.name}" (${attempt + 1} attempts)`);
        this.opts.logger.warn({ podId: entry.podId, attempt: attempt + 1, err: (err as Error).message }, 'CNI DEL failed; retrying');
        await sleep(delay);
      }
    }
  }

  /** CNI DEL with the cached config and result, then removes netns and cache; a pod already gone is fine. */
  async teardown(podId: string): Promise<void> {
    if (!POD_ID.test(podId)) throw invalidArgument(`tear down pod network: pod id "${podId}" must match ${POD_ID.source}`);
    return this.locks.run(podId, async () => {
      const entry = this.cache.get(podId);
      const netnsPath = entry?.netnsPath ?? join(this.netnsDir, podId);
      const ctx = `tear down network of pod ${entry ? podLabel(entry) : podId}`;
      if (entry) {
        const started = Date.now();
        const netns = await this.netnsForDel(entry);
        try {
          await this.delWithRetries(entry, netns);
        } catch (err) {
          throw wrapError(err, ctx);
        }
        this.opts.logger.info({ pod: podLabel(entry), ms: Date.now() - started }, 'pod network torn down');
      }
      try {
        await removeNetns(netnsPath, this.opts.launcher);
        await this.cache.remove(podId);
      } catch (err) {
        throw stepError(err, `${ctx}: remove network namespace ${netnsPath}`);
      }
    });
  }

  /**
   * Puts the pod's addresses and the routes of its CNI result back into its
   * netns, for a new sandbox to take them over: runsc (--network=sandbox)
   * moved them into the sandbox it replaces and stripped them from the netns.
   * Routes a plugin set up without listing them in its result are not known.
   */
  async reclaimAddresses(podId: string): Promise<void> {
    return this.locks.run(podId, async () => {
      const entry = this.cache.get(podId);
      if (!entry?.result) throw notFound(`reclaim addresses of pod ${podId}: network not set up`);
      try {
        await restoreAddresses(entry.netnsPath, entry.ifName, podAddresses(entry.result, entry.ifName), this.opts.launcher);
        await restoreRoutes(entry.netnsPath, entry.ifName, podRoutes(entry.result), this.opts.launcher);
      } catch (err) {
        throw stepError(err, `reclaim addresses of pod ${podLabel(entry)} in ${entry.netnsPath}`);
      }
    });
  }

  /**
   * The CNI_NETNS for a DEL, holding the pod's addresses as ADD left them
   * (plugins find what to clean up through them). A vanished namespace gets
   * a placeholder with those addresses; failing that, DEL runs with an empty
   * CNI_NETNS, which the spec allows.
   */
  private async netnsForDel(entry: CacheEntry): Promise<string> {
    const cidrs = podAddresses(entry.result, entry.ifName);
    if (await netnsExists(entry.netnsPath)) {
      await restoreAddresses(entry.netnsPath, entry.ifName, cidrs, this.opts.launcher).catch((err: unknown) =>
        this.opts.logger.warn({ podId: entry.podId, err: (err as Error).message }, 'could not put the pod addresses back before CNI DEL'),
      );
      return entry.netnsPath;
    }
    if (cidrs.length === 0) return '';
    try {
      await createPlaceholderNetns(entry.netnsPath, entry.ifName, cidrs, this.opts.launcher);
      this.opts.logger.info({ podId: entry.podId, addresses: cidrs }, 'pod netns was gone: CNI DEL runs in a placeholder holding its old addresses');
      return entry.netnsPath;
    } catch (err) {
      this.opts.logger.warn({ podId: entry.podId, err: (err as Error).message }, 'pod netns was gone and no placeholder could be made: CNI DEL without a netns');
      return '';
    }
  }

  /** CNI CHECK of a set-up pod (a no-op for configs older than 0.4.0 or with disableCheck). */
  check(podId: string): Promise<void> {
    return this.locks.run(podId, async () => {
      const entry = this.cache.get(podId);
      if (!entry?.result) throw notFound(`check network of pod ${podId}: not set up`);
      const ctx = `check network of pod ${podLabel(entry)}`;
      if (!hasPrevResultOnDel(entry.config.cniVersion) || entry.config.disableCheck === true) return;
      if (!(await netnsExists(entry.netnsPath))) throw failedPrecondition(`${ctx}: network namespace ${entry.netnsPath} is gone`);
      try {
        await checkList(entry.config, this.listCall(entry, entry.netnsPath), entry.result);
      } catch (err) {
        throw stepError(err, `${ctx}: CNI CHECK`);
      }
    });
  }

  /** The pod's network as set up, from the on-disk cache. */
  result(podId: string): PodNetworkResult | undefined {
    const entry = this.cache.get(podId);
    if (!entry?.ips) return undefined;
    return { netnsPath: entry.netnsPath, ips: [...entry.ips], interfaceName: IFNAME };
  }

  /** After a restart: tears down every pod network (cache entry or netns) the runtime no longer knows. */
  async recover(livePodIds: Set<string>): Promise<void> {
    const ids = new Set(this.cache.ids());
    for (const name of await readdir(this.netnsDir).catch(() => [] as string[])) {
      if (POD_ID.test(name)) ids.add(name);
    }
    for (const id of ids) {
      if (livePodIds.has(id)) continue;
      try {
        await this.teardown(id);
        this.opts.logger.info({ podId: id }, 'removed network of a pod the runtime no longer knows');
      } catch (err) {
        this.opts.logger.error({ podId: id, err: (err as Error).message }, 'removing network of an unknown pod failed');
      }
    }
  }

  /** Stops watching the config dir. */
  close(): void {
    this.config.close();
  }
}
