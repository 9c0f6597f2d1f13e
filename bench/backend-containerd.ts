/**
 * The peer: Debian's containerd with its CRI plugin, in its own root, state,
 * socket, CNI conf dir and bridge. Handler `runsc` runs the stock
 * io.containerd.runc.v2 shim over containerd-runsc-adapter (same runsc);
 * handler `runc` is the unsandboxed reference. Images come from the local
 * registry through a hosts.toml.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CriBackend } from './contender-cri.js';
import { waitForSocket } from './cri-client.js';
import { removeNatRules } from './cleanup.js';
import { benchConflist, networkName, type BenchEnv } from './env.js';
import { helpersBelow, memoryOf, processTable, sandboxProcessesOf, terminate, type MemoryFigure } from './procs.js';
import { apt } from './tools.js';

const ADAPTER = fileURLToPath(new URL('../../bench/containerd-runsc-adapter', import.meta.url));
const CONTAINERD = '/usr/bin/containerd';
const RUNC = '/usr/sbin/runc';

/** Installs containerd (and runc) from Debian if missing; the bench's setup only. */
export async function ensureContainerdInstalled(withRunc: boolean): Promise<{ runc: boolean }> {
  if (!(await apt.isInstalled('containerd'))) await apt.install(['containerd']);
  let runc = await apt.isInstalled('runc');
  if (withRunc && !runc) {
    runc = await apt.install(['runc']).then(() => true, () => false);
  }
  return { runc };
}

export class ContainerdBackend implements CriBackend {
  readonly socket: string;
  readonly logDir: string;
  readonly extraImages: readonly string[];
  private readonly dir: string;
  private proc: ChildProcess | undefined;
  private starting: Promise<void> | undefined;
  private users = 0;

  constructor(private readonly env: BenchEnv, private readonly index: number) {
    this.dir = join(env.dir, 'ctrd');
    this.socket = join(this.dir, 'containerd.sock');
    this.logDir = join(this.dir, 'pod-logs');
    this.extraImages = [env.images.pause];
  }

  get logFile(): string {
    return join(this.dir, 'containerd.log');
  }

  get runscRoot(): string {
    return join(this.dir, 'runsc-root');
  }

  private config(): string {
    const d = this.dir;
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    return `version = 2
root = "${d}/root"
state = "${d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "${this.socket}"

[ttrpc]
  address = "${this.socket}.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "${d}/opt"

[${cri}]
  sandbox_image = "${this.env.images.pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true

[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runsc"

[${cri}.containerd.runtimes.runsc]
  runtime_type = "io.containerd.runc.v2"
[${cri}.containerd.runtimes.runsc.options]
  BinaryName = "${d}/runsc-wrapper"
  Root = "${this.runscRoot}"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[${cri}.containerd.runtimes.runc.options]
  BinaryName = "${RUNC}"
  Root = "${d}/runc-root"

[${cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "${d}/cni"
  max_conf_num = 1

[${cri}.registry]
  config_path = "${d}/certs.d"
`;
  }

  /** Shared by the runsc and runc contenders: the first start starts it, the last stop stops it. */
  async start(): Promise<void> {
    this.users++;
    this.starting ??= this.startOnce();
    await this.starting;
  }

  private async startOnce(): Promise<void> {
    const d = this.dir;
    for (const sub of ['cni', 'pod-logs', 'adapter', `certs.d/${this.env.registry.host}`]) await mkdir(join(d, sub), { recursive: true });
    // containerd runs the loopback plugin itself: the list has the rest, as for the others.
    await writeFile(join(d, 'cni', '10-bench.conflist'), benchConflist(this.env.pid, 'c', this.index, join(d, 'ipam'), false));
    const host = this.env.registry.host;
    await writeFile(join(d, 'certs.d', host, 'hosts.toml'), `server = "http://${host}"\n\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n`);
    await writeFile(join(d, 'runsc-wrapper'), `#!/bin/sh\nNSFIX=1 ADAPTER_RUNSC=/usr/bin/runsc ADAPTER_PLATFORM=systrap ADAPTER_DIR=${d}/adapter exec ${ADAPTER} "$@"\n`);
    await chmod(join(d, 'runsc-wrapper'), 0o755);
    await writeFile(join(d, 'config.toml'), this.config());
    const log = await open(this.logFile, 'a');
    try {
      this.proc = spawn(CONTAINERD, ['--config', join(d, 'config.toml')], { stdio: ['ignore', log.fd, log.fd] });
    } finally {
      await log.close();
    }
    const proc = this.proc;
    await waitForSocket(this.socket, 60_000, () => proc.exitCode === null && proc.signalCode === null, `containerd (log: ${this.logFile})`);
  }

  /** containerd, its shims (found by our socket in their argv) and everything below them but the sandboxes. */
  async daemonMemory(): Promise<MemoryFigure> {
    const table = await processTable();
    const roots = table.filter((p) => p.pid === this.proc?.pid || (p.argv.some((a) => a.includes('containerd-shim')) && p.argv.includes(this.socket))).map((p) => p.pid);
    return memoryOf(helpersBelow(table, roots));
  }

  async sandboxMemory(): Promise<MemoryFigure> {
    return memoryOf(sandboxProcessesOf(await processTable(), this.runscRoot));
  }

  /**
   * The bridge plugin's masquerade rules that containerd + the adapter leave
   * on CNI DEL (bench/README.md). Left to pile up, they slow every later
   * iptables call of every contender: one run's gvisor-cri pods once failed
   * CNI ADD at its 30 s timeout behind 300 such rules.
   */
  sweepLeaks(liveIds: ReadonlySet<string>): Promise<number> {
    return removeNatRules([networkName(this.env.pid, 'c')], liveIds);
  }

  async stop(): Promise<void> {
    if (--this.users > 0) return;
    const pid = this.proc?.pid;
    if (pid !== undefined) await terminate(pid, 10_000);
    this.proc = undefined;
    // Shims outlive containerd by design; with every pod removed they have nothing left to do.
    const table = await processTable();
    for (const p of table.filter((x) => x.argv.some((a) => a.includes('containerd-shim')) && x.argv.includes(this.socket))) await terminate(p.pid, 5000);
  }
}
