/**
 * The one place that rebuilds live state at start-up (containerd's
 * restart.go): loads the records, rolls back half-made objects, reconciles
 * records with what runsc still runs, reattaches running containers' output
 * and exit waiters, sweeps cgroups no sandbox owns, and lets the network
 * module drop what no pod owns any more.
 */
import { chmod, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { CgroupManager, DEFAULT_CGROUP_PARENT, DEFAULT_SANDBOX_OVERHEAD } from '../cgroups/index.js';
import { dirname, join } from 'node:path';
import { readDaemonOomScoreAdj } from '../spec/oci-spec.js';
import type { RunscListEntry } from '../runsc/runsc.js';
import { UNKNOWN_EXIT_CODE } from './exit-monitor.js';
import { checkContainerRecord, checkSandboxRecord } from '../records/store.js';
import { PodRuntime, type PodRuntimeOptions, type RecoveryProblem } from './pod-runtime.js';
import { rollbackContainer, rollbackSandbox } from './teardown.js';

/** Where runsc/sandbox-driver.ts (ExecSync) and streaming/stream-backend.ts write exec process files, beside the runsc root. */
const EXEC_FILE_DIRS = ['exec', 'stream'] as const;

/** Ids this runtime gives sandboxes and containers; other runsc state under the root is not ours to judge. */
const OUR_ID = /^[0-9a-f]{64}$/;

/** Opens the runtime on its state and run dirs and recovers it. Pods keep running across this. */
export async function openPodRuntime(opts: PodRuntimeOptions): Promise<PodRuntime> {
  const cgroups = opts.cgroups ?? (await CgroupManager.open({ driver: 'cgroupfs', defaultParent: DEFAULT_CGROUP_PARENT, overhead: DEFAULT_SANDBOX_OVERHEAD, logger: opts.logger.child({ module: 'cgroups' }) }));
  const rt = new PodRuntime(opts, await readDaemonOomScoreAdj(), cgroups);
  await mkdir(opts.runsc.options.root, { recursive: true, mode: 0o700 });
  await mkdir(opts.runDir, { recursive: true, mode: 0o700 });
  await writeFile(rt.maskFile, '', { mode: 0o000 });
  await chmod(rt.maskFile, 0o000);
  // Exec process files hold containers' environments; a crash mid-exec leaves
  // them (ExecSync's and the streaming server's), and no exec outlives the
  // daemon that wrote its file, so both dirs are emptied.
  for (const dir of EXEC_FILE_DIRS) await rm(join(dirname(opts.runsc.options.root), dir), { recursive: true, force: true });
  const report = opts.onRecoveryProblem ?? (() => undefined);
  await rt.sandboxes.load(opts.logger, checkSandboxRecord, () => report({ kind: 'pod', problem: 'unreadable_record' }));
  await rt.containers.load(opts.logger, checkContainerRecord, () => report({ kind: 'container', problem: 'unreadable_record' }));
  await recoverState(rt);
  return rt;
}

/**
 * Every step on one pod, container or other object is tried on its own: one
 * that fails is logged and reported, and recovery goes on with the rest, so
 * one broken object never keeps the node's other pods from coming back.
 */
async function recoverState(rt: PodRuntime): Promise<void> {
  const deps = rt.opts;
  const log = deps.logger.child({ step: 'recover' });
  const step = async (kind: RecoveryProblem['kind'], what: string, fields: Record<string, unknown>, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      log.error({ err, ...fields }, `recovery: ${what} failed; going on with the rest`);
      deps.onRecoveryProblem?.({ kind, problem: 'failed_step' });
    }
  };
  let listed: Map<string, RunscListEntry>;
  try {
    listed = new Map((await deps.runsc.list()).map((e) => [e.id, e]));
  } catch (err) {
    // Without runsc's view nothing can be judged alive; keep records as they are.
    log.error({ err }, 'runsc list failed; pods and containers keep their recorded state');
    for (const c of rt.containers.list()) if (c.phase === 'running') rt.exits.watch(c);
    return;
  }

  // 1. Half-made objects from a crash in the middle of create.
  for (const c of rt.containers.list().filter((x) => x.phase === 'creating')) {
    log.info({ container: c.id }, 'rolling back a container left half-created');
    await step('container', 'rolling back a half-created container', { container: c.id }, () => rollbackContainer(rt, c));
  }
  for (const s of rt.sandboxes.list().filter((x) => x.phase === 'creating')) {
    log.info({ pod: s.id }, 'rolling back a pod sandbox left half-created');
    await step('pod', 'rolling back a half-created pod sandbox', { pod: s.id }, () => rollbackSandbox(rt, s));
  }

  // 2. Sandboxes whose runsc sandbox died while we were away are not ready.
  for (const s of rt.sandboxes.list()) {
    if (s.phase !== 'ready' || listed.get(s.id)?.status === 'running') continue;
    s.phase = 'notready';
    await step('pod', 'marking a pod sandbox NOTREADY', { pod: s.id }, () => rt.sandboxes.put(s));
    log.warn({ pod: s.id, name: `${s.namespace}/${s.name}` }, 'pod sandbox is gone; marked NOTREADY');
  }

  // 3. Containers: reattach the running ones; a waiter on one that exited meanwhile gets its status at once.
  for (const c of rt.containers.list()) {
    await step('container', 'recovering a container', { container: c.id }, async () => {
      const pod = rt.sandboxes.get(c.sandboxId);
      if (!pod) {
        log.warn({ container: c.id }, 'container of an unknown pod sandbox; removing it');
        await rollbackContainer(rt, c);
        return;
      }
      if (c.phase !== 'running') return;
      if (pod.phase === 'ready' && listed.has(c.id)) {
        try {
          await rt.io.open(c, 'reattach');
        } catch (err) {
          log.error({ err, container: c.id }, 'reattaching container output failed; its log stops here');
        }
        rt.exits.watch(c);
        // Exited while we were away: the sandbox answers the wait at once; report it before serving.
        if (listed.get(c.id)?.status === 'stopped') await rt.exits.awaitRecord(c.id, 5000);
      } else {
        await rt.exits.record(c, UNKNOWN_EXIT_CODE, 'Unknown', 'the container was gone when the runtime restarted');
      }
    });
  }

  // 4. runsc state no record owns (a crash between runsc create and the record update).
  const known = new Set([...rt.sandboxes.list().map((s) => s.id), ...rt.containers.list().map((c) => c.id)]);
  for (const [id, entry] of listed) {
    if (known.has(id) || !OUR_ID.test(id)) continue;
    log.warn({ id, status: entry.status }, 'removing runsc state no record owns');
    await step('runsc', 'removing orphan runsc state', { id }, () => rt.driver.removeContainer(id));
  }

  // 5. Image holds of containers that no longer exist (a crash between releasing and forgetting one).
  const containerIds = new Set(rt.containers.list().map((c) => c.id));
  // A container's image volumes are held as "<container id>/image-volume-<n>".
  for (const holder of deps.images.holderIds().filter((h) => !containerIds.has(h.split('/')[0]!))) {
    log.info({ holder }, 'releasing the image hold of a container that no longer exists');
    await step('image', 'releasing an orphan image hold', { holder }, () => deps.images.release(holder));
  }

  // 5b. Unpacked checkpoint archives of containers that no longer exist (a crash in a restoring CreateContainer).
  for (const id of await readdir(rt.restoreDir('')).catch(() => [])) {
    if (!containerIds.has(id)) await step('container', 'removing an orphan unpacked checkpoint', { container: id }, () => rm(rt.restoreDir(id), { recursive: true, force: true }));
  }

  // 5c. Cgroups of sandboxes that no longer exist (a crash mid-removal, or runsc's own at the hierarchy roots).
  try {
    const swept = await rt.cgroups.sweep(new Set(rt.sandboxes.list().map((s) => s.id)));
    if (swept.length > 0) log.info({ cgroups: swept }, 'removed cgroups of sandboxes that no longer exist');
  } catch (err) {
    log.error({ err }, 'sweeping stale sandbox cgroups failed');
  }

  // 6. Networks of pods that no longer exist.
  await step('network', 'recovering pod networks', {}, () => deps.network.recover(new Set(rt.sandboxes.list().map((s) => s.id))));
  log.info({ pods: rt.sandboxes.list().length, containers: rt.containers.list().length }, 'runtime state recovered');
}
