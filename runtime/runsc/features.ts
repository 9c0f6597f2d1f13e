/**
 * What the runsc in use can do, probed once at daemon start: version,
 * subcommands and flags from its help, and — with a throwaway sandbox in a
 * throwaway netns — whether it needs the netns workaround on this kernel
 * and which capability names it accepts. The probed part is cached in the
 * run dir (cleared at boot), keyed by runsc binary and kernel.
 */
import { mkdir, open, readFile, rm, stat } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { createNetns, removeNetns } from '../../network/index.js';
import { writeFileAtomic } from '../../common/index.js';
import type { Logger } from '../../cri-api/logger.js';
import { ALL_LINUX_CAPABILITIES } from '../spec/capabilities.js';
import type { InfraRootfs } from '../spec/infra-rootfs.js';
import { ANNOTATION_CONTAINER_TYPE, ANNOTATION_SANDBOX_ID, buildSandboxSpec, readBundleSpec, writeBundle } from '../spec/oci-spec.js';
import { RunscError, type Runsc, type RunscStdio } from './runsc.js';

export interface RunscFeatures {
  /** First line of `runsc --version`. */
  version: string;
  portForward: boolean;
  overlay2: boolean;
  ociSeccomp: boolean;
  /** Trace sessions: `runsc trace` and --pod-init-config (runtime monitoring). */
  traceSessions: boolean;
  /** `runsc start` of a sandbox in a pod netns needs the mount workaround (gvisor.md "Kernel >= 6.x"). */
  netnsWorkaround: boolean;
  /** Capability names this runsc accepts, in kernel order. */
  capabilities: string[];
}

interface CacheEntry {
  key: string;
  netnsWorkaround: boolean;
  capabilities: string[];
}

export interface ProbeOptions {
  runsc: Runsc;
  /** Scratch and cache directory (under the run dir). */
  workDir: string;
  infra: InfraRootfs;
  /** A cgroup the caller made for the probe sandbox; without one runsc makes one at each hierarchy's root. */
  cgroupsPath?: string;
  logger: Logger;
}

const ROOT_NETNS_ERROR = /root network namespace/i;
const UNKNOWN_CAP = /unknown capability "?(CAP_[A-Z_]+)"?/;

export async function probeRunscFeatures(opts: ProbeOptions): Promise<RunscFeatures> {
  const { runsc, workDir, logger } = opts;
  const version = (await runsc.version()).split('\n')[0]?.trim() ?? '';
  const help = await runsc.help('help');
  const flags = await runsc.help('flags');
  const base = {
    version,
    portForward: /^\s+port-forward\s/m.test(help),
    overlay2: /^\s+-overlay2\b/m.test(flags),
    ociSeccomp: /^\s+-oci-seccomp\b/m.test(flags),
    traceSessions: /^\s+trace\s/m.test(help) && /^\s+-pod-init-config\b/m.test(flags),
  };
  const bin = await stat(runsc.options.binary);
  const key = `${version}|${bin.size}|${bin.mtimeMs}|${release()}`;
  const cachePath = join(workDir, 'runsc-features.json');
  const cached = await readFile(cachePath, 'utf8').then((t) => JSON.parse(t) as CacheEntry).catch(() => undefined);
  if (cached?.key === key) return { ...base, netnsWorkaround: cached.netnsWorkaround, capabilities: cached.capabilities };

  const started = Date.now();
  const probed = await probeWithSandbox(opts);
  logger.info({ version, ...probed, ms: Date.now() - started }, 'probed runsc');
  await mkdir(workDir, { recursive: true });
  await writeFileAtomic(cachePath, JSON.stringify({ key, ...probed } satisfies CacheEntry), { durability: 'atomic' });
  return { ...base, ...probed };
}

async function probeWithSandbox(opts: ProbeOptions): Promise<Omit<CacheEntry, 'key'>> {
  const { runsc, workDir, infra } = opts;
  const id = `gvcri-probe-${process.pid}`;
  // The probe's throwaway namespace is made like a pod's, by the network module's own tools.
  const netns = join(workDir, `${id}.netns`);
  const bundle = join(workDir, id);
  await runsc.delete([id], { force: true }).catch(() => undefined);
  await mkdir(workDir, { recursive: true });
  await removeNetns(netns);
  await createNetns(netns);
  try {
    const spec = buildSandboxSpec({ id, hostname: 'probe', rootfsDir: infra.rootfsDir, args: infra.args, netnsPath: netns, daemonOomScoreAdj: 1000, cgroupsPath: opts.cgroupsPath });
    await writeBundle(bundle, spec);
    let netnsWorkaround = false;
    // The sandbox inherits create's stdio: a pipe would keep runsc's caller waiting for EOF until the sandbox dies.
    const devNull = await open('/dev/null', 'r+');
    const stdio = { stdin: devNull.fd, stdout: devNull.fd, stderr: devNull.fd };
    try {
      await runsc.create(id, { bundle, network: 'sandbox', stdio });
      try {
        await runsc.start(id);
      } catch (err) {
        if (!(err instanceof RunscError && ROOT_NETNS_ERROR.test(err.stderr))) throw err;
        netnsWorkaround = true;
        // A failed start leaves a half-made sandbox: make it again.
        await runsc.delete([id], { force: true });
        await runsc.create(id, { bundle, network: 'sandbox', stdio });
        await runsc.start(id, { netnsWorkaround: netns });
      }
      const capabilities = await probeCapabilities(runsc, id, bundle, stdio);
      return { netnsWorkaround, capabilities };
    } finally {
      await devNull.close();
    }
  } finally {
    await runsc.delete([id], { force: true }).catch((err: unknown) => opts.logger.warn({ err }, 'removing the runsc probe sandbox'));
    await removeNetns(netns).catch((err: unknown) => opts.logger.warn({ err }, 'removing the runsc probe network namespace'));
    await rm(bundle, { recursive: true, force: true });
  }
}

/**
 * Starts a sub-container holding every Linux capability; a runsc that does
 * not know one names it, and it is dropped before the next try.
 */
async function probeCapabilities(runsc: Runsc, sandboxId: string, bundle: string, stdio: RunscStdio): Promise<string[]> {
  let caps = [...ALL_LINUX_CAPABILITIES];
  const base = await readBundleSpec(bundle);
  for (let i = 0; i <= ALL_LINUX_CAPABILITIES.length; i++) {
    const id = `${sandboxId}-caps${i}`;
    const dir = join(bundle, `caps${i}`);
    const set = { bounding: caps, effective: caps, permitted: caps };
    await writeBundle(dir, { ...base, process: { ...base.process, capabilities: set }, annotations: { [ANNOTATION_CONTAINER_TYPE]: 'container', [ANNOTATION_SANDBOX_ID]: sandboxId } });
    try {
      await runsc.create(id, { bundle: dir, stdio });
      await runsc.start(id, { stdio });
      return caps;
    } catch (err) {
      const unknown = err instanceof RunscError ? UNKNOWN_CAP.exec(err.stderr)?.[1] : undefined;
      if (!unknown || !caps.includes(unknown)) throw err;
      caps = caps.filter((c) => c !== unknown);
    } finally {
      await runsc.delete([id], { force: true }).catch(() => undefined);
    }
  }
  return caps;
}
