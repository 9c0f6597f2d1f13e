import { access, constants, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { silentLogger } from '../cri-api/logger.js';
import { createNetns, NetworkManager, removeNetns } from '../network/index.js';
import { CgroupManager, ensureInfraRootfs, loadTraceSessionConfig, missingSinkEndpoints, probeRunscFeatures, Reaper, type RunscFeatures } from '../runtime/index.js';
import type { Config } from './config.js';
import { runscFor } from './services.js';

export interface CheckResult {
  name: string;
  ok: boolean;
  /** A failed required check makes `gvisor-cri check` exit 1. */
  required: boolean;
  detail: string;
  /** What to do about a failure. */
  hint: string;
}

type Probe = () => Promise<{ ok: boolean; detail: string; hint?: string }>;

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

async function writable(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const probe = join(dir, `.gvisor-cri-check-${process.pid}`);
  await writeFile(probe, 'ok');
  await rm(probe);
}

/** Every check a node needs before kubelet can run pods on it, in the order they depend on each other. */
export async function collectChecks(config: Config): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const run = async (name: string, required: boolean, hint: string, probe: Probe): Promise<boolean> => {
    let r: { ok: boolean; detail: string; hint?: string };
    try {
      r = await probe();
    } catch (err) {
      r = { ok: false, detail: message(err) };
    }
    results.push({ name, ok: r.ok, required, detail: r.detail, hint: r.ok ? '' : (r.hint ?? hint) });
    return r.ok;
  };

  // gvisor-cri does not ship runsc: its package depends on Debian's.
  const installHint = 'install runsc from bookworm-backports on Debian 12 (apt-get install -t bookworm-backports runsc; the gvisor-cri package depends on it, scripts/setup.sh installs it in a checkout) or point --runsc at it';
  const runscFound = await run('runsc binary', true, installHint, async () => {
    await access(config.runsc, constants.X_OK);
    return { ok: true, detail: config.runsc };
  });
  let features: RunscFeatures | undefined;
  if (runscFound) {
    await run('runsc version', true, installHint, async () => {
      const version = (await runscFor(config).version()).split('\n')[0]!.trim();
      return { ok: true, detail: version };
    });
    await run(`sandbox boots (${config.runscPlatform})`, true, `try --runsc-platform ptrace, or check that ${config.runscPlatform} works on this machine (kvm needs /dev/kvm)`, async () => {
      const work = await mkdtemp(join(tmpdir(), 'gvisor-cri-check-'));
      try {
        const infra = await ensureInfraRootfs(join(work, 'state'));
        features = await probeRunscFeatures({ runsc: runscFor(config), workDir: join(work, 'probe'), infra, logger: silentLogger });
        return { ok: true, detail: `booted a sandbox in a network namespace; ${features.version}` };
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    });
  } else {
    results.push({ name: 'runsc version', ok: false, required: true, detail: 'skipped: no runsc', hint: installHint });
    results.push({ name: `sandbox boots (${config.runscPlatform})`, ok: false, required: true, detail: 'skipped: no runsc', hint: installHint });
  }
  results.push({
    name: 'netns workaround',
    ok: true,
    required: false,
    detail: features === undefined ? 'unknown (no sandbox booted)' : features.netnsWorkaround ? 'needed on this kernel; applied automatically' : 'not needed',
    hint: '',
  });
  results.push({
    name: 'runsc port-forward',
    ok: features?.portForward ?? false,
    required: false,
    detail: features === undefined ? 'unknown' : features.portForward ? 'supported' : 'missing',
    hint: 'kubectl port-forward needs the runsc of bookworm-backports or newer',
  });

  await run('runsc helper (perl subreaper)', false, 'install perl (perl-base): without the helper, pod and container teardown waits for pid 1 to reap runsc processes and tty containers get no terminal', async () => {
    const reaper = await Reaper.start(silentLogger);
    if (!reaper) return { ok: false, detail: 'could not start (x86-64 only, needs perl)' };
    reaper.close();
    return { ok: true, detail: 'starts: reaps runsc processes, holds log FIFOs and terminals' };
  });

  if (config.traceSessionConfig) {
    await run('trace session config', true, 'fix the file named by trace-session-config (see README "Runtime monitoring"), or unset the option', async () => {
      const session = await loadTraceSessionConfig(config.traceSessionConfig);
      if (features && !features.traceSessions) return { ok: false, detail: `runsc ${features.version} has no trace sessions` };
      const missing = await missingSinkEndpoints(session);
      if (missing.length === 0) return { ok: true, detail: `${session.path}: ${session.points.length} points, sinks ${session.sinks.map((k) => k.name).join(', ')}` };
      const absent = missing.map((k) => k.endpoint).join(', ');
      const tolerated = missing.every((k) => k.ignoreSetupError);
      return tolerated
        ? { ok: true, detail: `${session.path}: sink socket ${absent} absent; pods start unmonitored (ignore_setup_error)` }
        : { ok: false, detail: `${session.path}: sink socket ${absent} absent: pods would fail to start`, hint: 'start the monitoring agent (e.g. Falco) that listens there first, or set ignore_setup_error on the sink' };
    });
  }

  await run('cgroup controllers', true, 'mount the memory, cpu, cpuacct and pids controllers (v1) or enable memory, cpu and pids in the cgroup2 root; the daemon must run as root (see README "Resources and cgroups")', async () => {
    const cgroups = await CgroupManager.open({
      driver: config.cgroupDriver,
      defaultParent: config.cgroupParent,
      overhead: { memoryBytes: config.sandboxOverheadMemory * 1024 * 1024, cpuMillis: config.sandboxOverheadCpu },
      logger: silentLogger,
    });
    return cgroups.probe();
  });

  await run('CNI config and plugins', true, `write a CNI config into ${config.cniConfDir} and install containernetworking-plugins into one of ${config.cniBinDirs.join(', ')}`, async () => {
    const work = await mkdtemp(join(tmpdir(), 'gvisor-cri-check-'));
    const network = await NetworkManager.open({
      confDir: config.cniConfDir,
      binDirs: config.cniBinDirs,
      runDir: join(work, 'run'),
      stateDir: join(work, 'state'),
      pluginTimeoutMs: config.cniPluginTimeout * 1000,
      defaultNetwork: config.defaultNetwork ? { bridge: config.defaultNetworkBridge, subnet: config.defaultNetworkSubnet } : undefined,
      logger: silentLogger,
    });
    try {
      const s = network.status();
      return { ok: s.ready, detail: s.ready ? `config in ${config.cniConfDir}${s.message ? `: ${s.message}` : ''}` : `${s.reason}: ${s.message}` };
    } finally {
      network.close();
      await rm(work, { recursive: true, force: true });
    }
  });

  await run('network namespaces', true, 'the kernel must allow creating network namespaces (CONFIG_NET_NS) and the daemon must run as root', async () => {
    const work = await mkdtemp(join(tmpdir(), 'gvisor-cri-check-'));
    const path = join(work, 'netns');
    try {
      await createNetns(path);
      await removeNetns(path);
      return { ok: true, detail: 'created and removed one' };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  await run('overlayfs', false, 'not needed by gVisor itself (its overlay is internal); some CNI or image tools expect it: modprobe overlay', async () => {
    const fs = await readFile('/proc/filesystems', 'utf8');
    const ok = /\toverlay$/m.test(fs);
    return { ok, detail: ok ? 'available' : 'not in /proc/filesystems' };
  });

  for (const [what, dir] of [['state dir', config.stateDir], ['run dir', config.runDir], ['socket dir', dirname(config.socket)]] as const) {
    await run(`${what} writable`, true, `make ${dir} writable for the daemon's user (root), or choose another --${what.split(' ')[0]}-dir`, async () => {
      await writable(dir);
      return { ok: true, detail: dir };
    });
  }
  return results;
}

/** `gvisor-cri check`: prints the table (or JSON) and returns the exit code: 0 all required checks pass, 1 otherwise. */
export async function runCheck(config: Config, opts: { json: boolean }): Promise<number> {
  const results = await collectChecks(config);
  const failed = results.filter((r) => r.required && !r.ok);
  if (opts.json) {
    process.stdout.write(JSON.stringify({ ok: failed.length === 0, checks: results }, null, 2) + '\n');
  } else {
    const width = Math.max(...results.map((r) => r.name.length));
    for (const r of results) {
      const mark = r.ok ? 'pass' : r.required ? 'FAIL' : 'warn';
      process.stdout.write(`${mark}  ${r.name.padEnd(width)}  ${r.detail}\n`);
      if (!r.ok && r.hint) process.stdout.write(`      ${' '.repeat(width)}  hint: ${r.hint}\n`);
    }
    process.stdout.write(failed.length === 0 ? '\nall required checks passed\n' : `\n${failed.length} required check(s) failed\n`);
  }
  return failed.length === 0 ? 0 : 1;
}
