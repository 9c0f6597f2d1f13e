/**
 * The floor: the same netns + CNI plugins and the same OCI bundles, driven
 * by hand with the repo's own pieces (NetworkManager, Runsc, SandboxDriver,
 * oci-spec, infra-rootfs) and no daemon. "What gvisor-cri would cost with
 * zero overhead of its own." The naive variant tears pods down the obvious
 * way (kill + delete --force per container, then the sandbox).
 */
import { randomBytes } from 'node:crypto';
import { close as closeCb, open as openCb } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { silentLogger } from '../cri-api/logger.js';
import { NetworkManager, writePodFiles } from '../network/index.js';
import { ensureInfraRootfs, isGone, probeRunscFeatures, Runsc, SandboxDriver, type InfraRootfs, type RunscFeatures } from '../runtime/index.js';
import { buildContainerSpec, buildExecProcess, buildSandboxSpec, readDaemonOomScoreAdj } from '../runtime/index.js';
import { CONTAINER_ARGS, forEachLimited, STOP_TIMEOUT_SEC, type CaseName, type ContainerRef, type Contender, type ContenderName, type PodRef } from './contender.js';
import { benchConflist, type BenchEnv } from './env.js';
import { memoryOf, processTable, sandboxProcessesOf, type MemoryFigure } from './procs.js';

const openFd = promisify(openCb) as (path: string, flags: string) => Promise<number>;
const closeFd = promisify(closeCb);

const CNI_BIN_DIRS = ['/opt/cni/bin', '/usr/lib/cni'];
const EXEC_TIMEOUT_MS = 30_000;
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface RawPod {
  ref: PodRef;
  containers: Set<string>;
}

export class RawContender implements Contender {
  readonly label: string;
  readonly reference = false;
  readonly cases: ReadonlySet<CaseName>;
  private readonly dir: string;
  private runsc!: Runsc;
  private driver!: SandboxDriver;
  private network: NetworkManager | undefined;
  private infra!: InfraRootfs;
  private features!: RunscFeatures;
  private oomScoreAdj = 0;
  private readonly pods = new Map<string, RawPod>();

  constructor(readonly name: Extract<ContenderName, 'raw' | 'raw-naive'>, private readonly env: BenchEnv, private readonly index: number) {
    const naive = name === 'raw-naive';
    this.label = naive ? 'raw runsc, naive teardown' : 'raw runsc (floor)';
    // The naive variant only differs in teardown: it joins the lifecycle case alone.
    // In the relist case raw only gives its sandboxes' memory (it has nothing to relist).
    this.cases = new Set<CaseName>(naive ? ['lifecycle'] : ['lifecycle', 'concurrent', 'relist']);
    this.dir = join(env.dir, naive ? 'raw-naive' : 'raw');
  }

  private get letter(): string {
    return this.name === 'raw-naive' ? 'n' : 'r';
  }

  async start(): Promise<void> {
    const runDir = join(this.dir, 'run');
    const stateDir = join(this.dir, 'state');
    const confDir = join(this.dir, 'cni');
    await mkdir(confDir, { recursive: true });
    await writeFile(join(confDir, '10-bench.conflist'), benchConflist(this.env.pid, this.letter, this.index, join(stateDir, 'ipam'), true));
    this.runsc = new Runsc({ binary: '/usr/bin/runsc', root: join(runDir, 'runsc'), platform: 'systrap', overlay2: 'root:memory', network: 'sandbox' });
    await mkdir(this.runsc.options.root, { recursive: true, mode: 0o700 });
    this.infra = await ensureInfraRootfs(stateDir);
    this.features = await probeRunscFeatures({ runsc: this.runsc, workDir: join(runDir, 'probe'), infra: this.infra, logger: silentLogger });
    this.driver = new SandboxDriver(this.runsc, silentLogger);
    this.oomScoreAdj = await readDaemonOomScoreAdj();
    this.network = await NetworkManager.open({ confDir, binDirs: CNI_BIN_DIRS, runDir, stateDir, pluginTimeoutMs: 30_000, logger: silentLogger });
    const st = this.network.status();
    if (!st.ready) throw new Error(`raw contender network not ready: ${st.message}`);
  }

  private podDir(id: string): string {
    return join(this.dir, 'run', 'pods', id);
  }

  async runPod(name: string): Promise<PodRef> {
    const id = randomBytes(32).toString('hex');
    const ref = { id, name };
    const uid = randomBytes(8).toString('hex');
    const net = await this.network!.setup({ podId: id, name, namespace: 'bench', uid, portMappings: [] });
    this.pods.set(id, { ref, containers: new Set() });
    const dir = this.podDir(id);
    const etcFiles = await writePodFiles(join(dir, 'etc'), { hostname: name, ips: net.ips });
    const spec = buildSandboxSpec({ id, hostname: name, rootfsDir: this.infra.rootfsDir, args: this.infra.args, netnsPath: net.netnsPath, etcFiles, daemonOomScoreAdj: this.oomScoreAdj });
    await this.driver.createSandbox({ id, bundleDir: join(dir, 'bundle'), spec, networkMode: 'sandbox', netnsPath: net.netnsPath, needsNetnsWorkaround: this.features.netnsWorkaround });
    return ref;
  }

  async startContainer(pod: PodRef): Promise<ContainerRef> {
    const id = randomBytes(32).toString('hex');
    const dir = join(this.dir, 'run', 'containers', id);
    const spec = buildContainerSpec({
      sandboxId: pod.id, rootfsDir: this.env.busyboxRootfs, readonlyRootfs: false, args: CONTAINER_ARGS, env: [PATH_ENV], cwd: '/',
      user: { uid: 0, gid: 0 }, terminal: false, hostname: pod.name, capabilities: { add: [], drop: [] }, privileged: false,
      knownCapabilities: this.features.capabilities, noNewPrivileges: false, mounts: [], daemonOomScoreAdj: this.oomScoreAdj,
      etcFiles: { hosts: join(this.podDir(pod.id), 'etc', 'hosts'), resolvConf: join(this.podDir(pod.id), 'etc', 'resolv.conf'), hostname: join(this.podDir(pod.id), 'etc', 'hostname') },
    });
    const bundleDir = join(dir, 'bundle');
    await this.driver.prepareContainer({ id, sandboxId: pod.id, bundleDir, spec });
    // The floor's log plumbing: one plain file, handed straight to runsc (sub-containers take stdio at start).
    const log = await openFd(join(dir, 'container.log'), 'a');
    try {
      await this.runsc.runDetached(id, { bundle: bundleDir, stdio: { stdout: log, stderr: log } });
    } finally {
      await closeFd(log);
    }
    this.pods.get(pod.id)?.containers.add(id);
    return { id, podId: pod.id };
  }

  async exec(ctr: ContainerRef): Promise<void> {
    const proc = buildExecProcess({ args: ['true'], env: [PATH_ENV], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false, capabilities: [] });
    const r = await this.driver.execSync(ctr.id, proc, EXEC_TIMEOUT_MS);
    if (r.exitCode !== 0) throw new Error(`exec true in ${ctr.id.slice(0, 12)} exited ${r.exitCode}: ${r.stderr.toString().trim()}`);
  }

  async stopRemoveContainer(ctr: ContainerRef): Promise<void> {
    await this.driver.stopContainer(ctr.id, STOP_TIMEOUT_SEC);
    await this.driver.removeContainer(ctr.id);
    await rm(join(this.dir, 'run', 'containers', ctr.id), { recursive: true, force: true });
    this.pods.get(ctr.podId)?.containers.delete(ctr.id);
  }

  async stopRemovePod(pod: PodRef): Promise<void> {
    const rec = this.pods.get(pod.id);
    const ctrs = [...(rec?.containers ?? [])];
    if (this.name === 'raw-naive') {
      for (const c of [...ctrs, pod.id]) {
        await this.runsc.kill(c, 'SIGKILL').catch((err: unknown) => {
          if (!isGone(err)) throw err;
        });
        await this.runsc.delete([c], { force: true });
      }
    } else {
      await this.driver.stopSandbox(pod.id, ctrs);
    }
    await this.network!.teardown(pod.id);
    await rm(this.podDir(pod.id), { recursive: true, force: true });
    for (const c of ctrs) await rm(join(this.dir, 'run', 'containers', c), { recursive: true, force: true });
    this.pods.delete(pod.id);
  }

  async daemonMemory(): Promise<MemoryFigure | undefined> {
    return undefined;
  }

  async sandboxMemory(): Promise<MemoryFigure> {
    return memoryOf(sandboxProcessesOf(await processTable(), this.runsc.options.root));
  }

  async removeAllPods(): Promise<void> {
    await forEachLimited([...this.pods.values()], 4, async (p) => {
      await this.driver.stopSandbox(p.ref.id, [...p.containers]).catch(() => undefined);
      await this.network?.teardown(p.ref.id).catch(() => undefined);
      this.pods.delete(p.ref.id);
    });
  }

  async stop(): Promise<void> {
    if (this.runsc) await this.removeAllPods().catch(() => undefined);
    this.network?.close();
  }
}
