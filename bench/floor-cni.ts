/**
 * The floor of the network case: a pod network made by hand, as a script
 * would: a netns bind-mounted on a file (`unshare --net=FILE`), each plugin
 * of the conflist run with the CNI env vars and its config on stdin
 * (prevResult chained), DEL in reverse with the last result, then the netns
 * unmounted and removed. No cache, no locks, no validation, no retries.
 */
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cniPlugin, mount, unshare } from './tools.js';

const PLUGIN_TIMEOUT_MS = 30_000;
const IFNAME = 'eth0';

interface ConfList {
  cniVersion: string;
  name: string;
  plugins: Array<Record<string, unknown> & { type: string }>;
}

export interface HandPod {
  id: string;
  netns: string;
  args: string;
  result: unknown;
}

export class HandCni {
  private readonly list: ConfList;

  /** `conflist` is the JSON text of a bench conflist; namespaces go under `netnsDir`. */
  constructor(conflist: string, private readonly binDir: string, private readonly netnsDir: string) {
    this.list = JSON.parse(conflist) as ConfList;
  }

  private env(command: 'ADD' | 'DEL', pod: HandPod): Record<string, string> {
    return { CNI_COMMAND: command, CNI_CONTAINERID: pod.id, CNI_NETNS: pod.netns, CNI_IFNAME: IFNAME, CNI_PATH: this.binDir, CNI_ARGS: pod.args };
  }

  private conf(plugin: ConfList['plugins'][number], prevResult: unknown): object {
    const conf: Record<string, unknown> = { ...plugin, name: this.list.name, cniVersion: this.list.cniVersion };
    if (prevResult !== undefined) conf.prevResult = prevResult;
    return conf;
  }

  /** netns + CNI ADD through the list; on failure what was made is torn down. */
  async setup(id: string, name: string, uid: string): Promise<HandPod> {
    await mkdir(this.netnsDir, { recursive: true });
    const pod: HandPod = { id, netns: join(this.netnsDir, id), args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${id};K8S_POD_UID=${uid}`, result: undefined };
    await (await open(pod.netns, 'wx', 0o444)).close();
    try {
      await unshare.netnsOn(pod.netns);
      for (const p of this.list.plugins) {
        pod.result = JSON.parse(await cniPlugin.call(join(this.binDir, p.type), this.env('ADD', pod), this.conf(p, pod.result), PLUGIN_TIMEOUT_MS)) as unknown;
      }
      return pod;
    } catch (err) {
      // What a careful script does: undo what it made, then fail.
      await this.teardown(pod).catch(() => undefined);
      throw err;
    }
  }

  /** CNI DEL in reverse with the ADD result, then the netns; every step tried, the first failure thrown. */
  async teardown(pod: HandPod): Promise<void> {
    let first: Error | undefined;
    for (const p of [...this.list.plugins].reverse()) {
      await cniPlugin.call(join(this.binDir, p.type), this.env('DEL', pod), this.conf(p, pod.result), PLUGIN_TIMEOUT_MS).catch((err: Error) => (first ??= err));
    }
    await mount.unmount(pod.netns).catch((err: Error) => (first ??= err));
    await rm(pod.netns, { force: true });
    if (first) throw first;
  }
}
