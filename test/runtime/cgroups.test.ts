/**
 * The cgroup component: systemd and cgroupfs paths, v1/v2 layouts, limits
 * arithmetic (pure), then the manager on this host's real cgroupfs under a
 * parent of this test's own.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, rmdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { silentLogger } from '../../cri-api/logger.js';
import { allRoots, ancestors, CgroupManager, CgroupPathError, controllerRoot, defaultParentFor, expandSlice, parseMountinfo, readLayout, sandboxCgroupPath, sandboxLimits, sharesToWeight, systemdCgroupPath } from '../../runtime/cgroups/index.js';

const ID = 'ab'.repeat(32);

test('systemd driver: slices expand as systemd lays them out; scopes go into them', () => {
  assert.equal(expandSlice('kubepods-burstable-pod1234.slice'), '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice');
  assert.equal(expandSlice('kubepods.slice'), '/kubepods.slice');
  assert.equal(expandSlice('-.slice'), '/');
  assert.equal(systemdCgroupPath('kubepods-besteffort-podx.slice:gvisor-cri:abc'), '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice/gvisor-cri-abc.scope');
  assert.equal(systemdCgroupPath('-.slice:p:n'), '/p-n.scope');
  assert.equal(sandboxCgroupPath('systemd', 'kubepods-burstable-pod1.slice', 'gvisor-cri', ID), `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/gvisor-cri-${ID}.scope`);
  assert.equal(sandboxCgroupPath('systemd', undefined, 'gvisor-cri', ID), `/gvisor.slice/gvisor-cri.slice/gvisor-cri-${ID}.scope`);
  assert.equal(defaultParentFor('systemd', 'gvisor-cri'), 'gvisor-cri.slice');
  for (const bad of ['/kubepods/pod1', 'kubepods--x.slice', 'kubepods', 'a.slice:b', 'a.slice::c']) {
    assert.throws(() => (bad.includes(':') ? systemdCgroupPath(bad) : sandboxCgroupPath('systemd', bad, 'gvisor-cri', ID)), CgroupPathError, bad);
  }
});

test('cgroupfs driver: the sandbox sits under its pod parent or the daemon-wide one, never at the root', () => {
  assert.equal(sandboxCgroupPath('cgroupfs', '/kubepods/burstable/pod1', 'gvisor-cri', ID), `/kubepods/burstable/pod1/${ID}`);
  assert.equal(sandboxCgroupPath('cgroupfs', '/kubepods//pod1/', 'gvisor-cri', ID), `/kubepods/pod1/${ID}`);
  assert.equal(sandboxCgroupPath('cgroupfs', undefined, 'gvisor-cri', ID), `/gvisor-cri/${ID}`);
  assert.equal(sandboxCgroupPath('cgroupfs', '', '/nodes/gv', ID), `/nodes/gv/${ID}`);
  assert.throws(() => sandboxCgroupPath('cgroupfs', 'kubepods', 'gvisor-cri', ID), CgroupPathError);
  assert.throws(() => sandboxCgroupPath('cgroupfs', '/kubepods/../x', 'gvisor-cri', ID), CgroupPathError);
  assert.deepEqual(ancestors('/a/b/c'), ['/a/b', '/a']);
});

test('layouts: v1 with every controller (this host\'s kind), pure v2, hybrid counts as v1', () => {
  const v1 = [
    '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
    '33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct',
    '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  ].join('\n');
  const l1 = parseMountinfo(v1);
  assert.equal(l1?.version, 1);
  assert.equal(controllerRoot(l1!, 'cpuacct'), '/sys/fs/cgroup/cpuacct');
  assert.equal(controllerRoot(l1!, 'pids'), undefined);
  assert.deepEqual(allRoots(l1!), ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpuacct', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/systemd']);
  const l2 = parseMountinfo('29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot');
  assert.deepEqual(l2, { version: 2, path: '/sys/fs/cgroup' });
  assert.equal(controllerRoot(l2!, 'memory'), '/sys/fs/cgroup');
  // On v2 the sandbox path is the same relative path under the one tree.
  assert.deepEqual(allRoots(l2!).map((r) => join(r, sandboxCgroupPath('systemd', 'kubepods-pod1.slice', 'gvisor-cri', ID))), [`/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice/gvisor-cri-${ID}.scope`]);
  assert.equal(parseMountinfo('22 1 8:1 / / rw - ext4 /dev/sda1 rw'), undefined);
});

test('limits: the sum of the containers\' plus overhead when every container has one', () => {
  const mib = 1024 * 1024;
  const overhead = { memoryBytes: 64 * mib, cpuMillis: 100 };
  const c = (memoryLimitBytes: number, cpuQuota: number, cpuPeriod: number, cpuShares: number) => ({ memoryLimitBytes, cpuQuota, cpuPeriod, cpuShares });
  // A sandbox with no container yet, or none that asked for CPU weight, gets the least (as kubelet's BestEffort pods).
  assert.deepEqual(sandboxLimits([], overhead), { cpuPeriodUs: 100_000, cpuShares: 2 });
  assert.deepEqual(sandboxLimits([c(0, 0, 0, 0)], overhead), { cpuPeriodUs: 100_000, cpuShares: 2 });
  assert.deepEqual(sandboxLimits([c(64 * mib, 50_000, 100_000, 512), c(32 * mib, 25_000, 50_000, 256)], overhead), {
    cpuPeriodUs: 100_000,
    memoryBytes: 160 * mib,
    // 0.5 + 0.5 CPU (rescaled to the 100 ms period) + 0.1 overhead.
    cpuQuotaUs: 110_000,
    cpuShares: 512 + 256 + 102,
  });
  // One container without a limit makes the pod unlimited in that resource.
  assert.deepEqual(sandboxLimits([c(64 * mib, 0, 0, 2), c(0, 50_000, 100_000, 2)], { memoryBytes: 0, cpuMillis: 0 }), { cpuPeriodUs: 100_000, cpuShares: 4 });
  assert.equal(sharesToWeight(2), 1);
  assert.equal(sharesToWeight(262_144), 10_000);
  assert.equal(sharesToWeight(1024), 39);
});

// --- the manager on this host's cgroupfs ---------------------------------------

const layout = await readLayout();
const parent = `gvcri-cgtest-${process.pid}`;
const manager = new CgroupManager({ driver: 'cgroupfs', defaultParent: parent, overhead: { memoryBytes: 0, cpuMillis: 0 }, logger: silentLogger }, layout);
after(async () => {
  for (const root of layout ? allRoots(layout) : []) await rmdir(join(root, parent)).catch(() => undefined);
});

test('manager: makes the missing parents in every hierarchy, writes limits, reads counters and usage, removes what it made', { skip: layout?.version !== 1 && 'needs cgroup v1 (this project\'s machines)' }, async () => {
  const path = manager.pathFor(undefined, ID);
  assert.equal(path, `/${parent}/${ID}`);
  const made = await manager.create(path);
  assert.deepEqual(made, [`/${parent}`]);
  for (const root of allRoots(layout!)) {
    assert.ok((await stat(join(root, parent))).isDirectory(), `${root}/${parent}`);
    // The sandbox's own directory is runsc's to make (and then to remove on delete); made here as runsc would.
    await assert.rejects(stat(join(root, path)), { code: 'ENOENT' });
    await mkdir(join(root, path));
  }
  const cpuset = controllerRoot(layout!, 'cpuset')!;
  assert.notEqual((await readFile(join(cpuset, parent, 'cpuset.cpus'), 'utf8')).trim(), '', 'a parent we make gets its parent\'s CPUs');
  await manager.setLimits(path, { memoryBytes: 96 * 1024 * 1024, cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, cpuShares: 300 });
  assert.equal(await manager.memoryLimit(path), 96 * 1024 * 1024);
  const cpu = controllerRoot(layout!, 'cpu')!;
  assert.equal((await readFile(join(cpu, path, 'cpu.cfs_quota_us'), 'utf8')).trim(), '50000');
  assert.equal((await readFile(join(cpu, path, 'cpu.shares'), 'utf8')).trim(), '300');
  await manager.setLimits(path, { cpuPeriodUs: 100_000, cpuShares: 2 });
  assert.equal(await manager.memoryLimit(path), undefined);
  assert.equal((await readFile(join(cpu, path, 'cpu.cfs_quota_us'), 'utf8')).trim(), '-1');
  assert.equal((await readFile(join(cpu, path, 'cpu.shares'), 'utf8')).trim(), '2');
  assert.deepEqual(await manager.oomCounters(path), { oomKills: 0, limitHits: 0 });
  const usage = await manager.usage(path);
  assert.equal(usage?.memoryBytes, 0);
  await manager.remove(path, made);
  for (const root of allRoots(layout!)) {
    await assert.rejects(stat(join(root, path)), { code: 'ENOENT' });
    await assert.rejects(stat(join(root, parent)), { code: 'ENOENT' });
  }
  assert.equal(await manager.oomCounters(path), undefined);
  assert.equal(await manager.usage(path), undefined);
});

test('sweep: removes stale sandbox cgroups no live sandbox owns, keeps owned, fresh, busy and foreign ones', { skip: layout?.version !== 1 && 'needs cgroup v1' }, async () => {
  const stale = 'c'.repeat(64);
  const owned = 'd'.repeat(64);
  const fresh = 'e'.repeat(64);
  const busy = 'f'.repeat(64);
  const roots = allRoots(layout!);
  const old = new Date(Date.now() - 3_600_000);
  for (const root of roots) {
    for (const name of [stale, owned, fresh, busy, 'not-a-sandbox']) {
      await mkdir(join(root, parent, name), { recursive: true });
      if (name !== fresh) await utimes(join(root, parent, name), old, old);
    }
  }
  // A process in it: rmdir refuses, and the sweep must not end it.
  const mem = controllerRoot(layout!, 'memory')!;
  const { spawn } = await import('node:child_process');
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    await writeFile(join(mem, parent, busy, 'cgroup.procs'), String(sleeper.pid));
    const removed = await manager.sweep(new Set([owned]));
    assert.ok(removed.includes(`/${parent}/${stale}`), JSON.stringify(removed));
    for (const root of roots) {
      await assert.rejects(stat(join(root, parent, stale)), { code: 'ENOENT' });
      for (const kept of [owned, fresh, 'not-a-sandbox']) assert.ok((await stat(join(root, parent, kept))).isDirectory(), `${root} ${kept}`);
    }
    assert.ok((await stat(join(mem, parent, busy))).isDirectory());
    assert.equal(sleeper.exitCode, null);
  } finally {
    sleeper.kill('SIGKILL');
    await new Promise((r) => sleeper.once('exit', r));
  }
  for (const root of roots) {
    for (const name of [owned, fresh, busy, 'not-a-sandbox']) {
      // The sleeper's exit takes a moment to leave the cgroup.
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          await rmdir(join(root, parent, name));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
  }
});
