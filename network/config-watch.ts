/**
 * The CNI config in force: read from the config dir at start and again on
 * every change of it (debounced; the dir may even vanish and come back),
 * falling back to the built-in bridge network when the dir holds none.
 */
import { watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { KeyedLock } from '../common/index.js';
import { BUILTIN_SOURCE, builtinConfig, loadConfig, missingPluginMessage, type ConfigState } from './cni-config.js';
import type { NetworkOptions, NetworkStatus } from './types.js';

const RELOAD_DEBOUNCE_MS = 100;
const REWATCH_DELAY_MS = 1000;
const NOT_READY_REASON = 'NetworkPluginNotReady';

export class ConfigWatch {
  private state: ConfigState = { ok: false, message: 'CNI config not loaded yet' };
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private rewatch: NodeJS.Timeout | undefined;
  /** One reload at a time, in order. */
  private readonly reloads = new KeyedLock();
  private closed = false;

  constructor(private readonly opts: NetworkOptions) {}

  /** Loads the config and starts watching its dir. */
  async start(): Promise<void> {
    await this.reload();
    this.watchConfDir();
  }

  /** The config in force, or why there is none. */
  get current(): ConfigState {
    return this.state;
  }

  /** Re-reads the config dir now (the watcher does this on every change). */
  reload(): Promise<void> {
    return this.reloads.run('config', async () => {
      const def = this.opts.defaultNetwork;
      const builtin = def ? () => builtinConfig(def.bridge, def.subnet, join(this.opts.stateDir, 'cni', 'ipam')) : undefined;
      const next = await loadConfig(this.opts.confDir, builtin);
      const prev = this.state;
      this.state = next;
      if (JSON.stringify(prev) === JSON.stringify(next)) return;
      if (next.ok && next.source === BUILTIN_SOURCE) {
        this.opts.logger.info({ network: next.list.name, bridge: def?.bridge, subnet: def?.subnet, confDir: this.opts.confDir }, 'no CNI config found: using the built-in bridge network');
      } else if (next.ok) {
        this.opts.logger.info({ network: next.list.name, file: next.source, cniVersion: next.list.cniVersion }, 'CNI config loaded');
      } else {
        this.opts.logger.warn({ reason: next.message }, 'no usable CNI config: pod network not ready');
      }
    });
  }

  /** The CRI NetworkReady condition. */
  status(): NetworkStatus {
    const s = this.state;
    if (!s.ok) return { ready: false, reason: NOT_READY_REASON, message: s.message };
    const missing = missingPluginMessage(s.list, this.opts.binDirs);
    if (missing) return { ready: false, reason: NOT_READY_REASON, message: `${missing} (needed by ${s.source})` };
    return { ready: true, reason: '', message: '' };
  }

  /** Stops watching. */
  close(): void {
    this.closed = true;
    clearTimeout(this.debounce);
    clearTimeout(this.rewatch);
    this.watcher?.close();
    this.watcher = undefined;
  }

  private watchConfDir(): void {
    if (this.closed) return;
    try {
      this.watcher = watch(this.opts.confDir, () => this.scheduleReload());
      this.watcher.on('error', (err) => this.restartWatch(err));
    } catch (err) {
      this.restartWatch(err);
    }
  }

  // The dir may vanish and come back (e.g. a config management tool replacing it): watch again later.
  private restartWatch(err: unknown): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.closed) return;
    this.opts.logger.warn({ confDir: this.opts.confDir, err: (err as Error).message }, 'watching CNI config dir failed; retrying');
    this.scheduleReload();
    this.rewatch = setTimeout(() => this.watchConfDir(), REWATCH_DELAY_MS);
    this.rewatch.unref();
  }

  private scheduleReload(): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.reload().catch((err: unknown) => this.opts.logger.error({ err }, 'reloading CNI config failed'));
    }, RELOAD_DEBOUNCE_MS);
    this.debounce.unref();
  }
}
