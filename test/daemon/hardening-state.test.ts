// The daemon's own files: state and run dirs private (0700) even when they
// existed looser, and an audit log that syncs its records, follows log
// rotation and counts what it could not write.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { silentLogger, type Logger } from '../../cri-api/logger.js';
import { AuditLog, type AuditRecord } from '../../daemon/audit.js';
import { ensurePrivateDir } from '../../daemon/daemon.js';
import { DaemonMetrics } from '../../daemon/metrics.js';
import { startDaemon } from '../helpers/daemon.js';

const dir = await mkdtemp(join(tmpdir(), 'gvcri-hardening-'));
after(() => rm(dir, { recursive: true, force: true }));

function capture(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const logger: Logger = pino({ level: 'debug' }, new Writable({ write: (c: Buffer, _e, cb) => (out.push(c.toString()), cb()) }));
  return { logger, lines: () => out.join('').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const record = (n: number): AuditRecord => ({ time: new Date(0).toISOString(), rpc: 'ExecSync', pod: { id: 'p', name: 'n', namespace: 'ns' }, cmd: ['echo', String(n)], outcome: { ok: true, exit_code: 0 } });
const lines = async (path: string): Promise<Record<string, unknown>[]> => (await readFile(path, 'utf8')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

test('state and run dirs are made 0700, and an existing looser one is fixed with a warning', async () => {
  const { logger, lines: logged } = capture();
  const fresh = join(dir, 'fresh', 'state');
  await ensurePrivateDir(fresh, 'state-dir', logger);
  assert.equal((await stat(fresh)).mode & 0o7777, 0o700);
  assert.deepEqual(logged(), [], 'a fresh dir needs no warning');

  const loose = join(dir, 'loose');
  await mkdir(loose);
  await chmod(loose, 0o755);
  await ensurePrivateDir(loose, 'run-dir', logger);
  assert.equal((await stat(loose)).mode & 0o7777, 0o700);
  const warning = logged().find((l) => l.level === 40);
  assert.ok(warning, 'warned');
  assert.equal(warning.dir, loose);
  assert.equal(warning.mode, '755');
  assert.match(String(warning.msg), /run-dir was reachable by other users: mode set to 0700/);
});

test('a state dir owned by another user is refused', { skip: process.getuid?.() !== 0 && 'needs root to chown' }, async () => {
  const foreign = join(dir, 'foreign');
  await mkdir(foreign, { mode: 0o700 });
  await chown(foreign, 65534, 65534);
  await assert.rejects(ensurePrivateDir(foreign, 'state-dir', silentLogger), /state-dir .*foreign belongs to uid 65534, not to the daemon/);
});

test('audit records are on disk, in order, when write() resolves; bursts share a sync', async () => {
  const path = join(dir, 'burst', 'audit.log');
  const audit = await AuditLog.open(path, silentLogger);
  await Promise.all(Array.from({ length: 200 }, (_, i) => audit.write(record(i))));
  const recs = await lines(path);
  assert.deepEqual(recs.map((r) => (r.cmd as string[])[1]), Array.from({ length: 200 }, (_, i) => String(i)));
  await audit.close();
});

test('after logrotate moves the audit log away, the next record goes to a new file at the path; reopen() does the same on SIGHUP', async () => {
  const { logger, lines: logged } = capture();
  const path = join(dir, 'rotate', 'audit.log');
  const audit = await AuditLog.open(path, logger);
  await audit.write(record(1));
  await rename(path, `${path}.1`);
  await audit.write(record(2));
  assert.deepEqual((await lines(`${path}.1`)).map((r) => (r.cmd as string[])[1]), ['1']);
  assert.deepEqual((await lines(path)).map((r) => (r.cmd as string[])[1]), ['2']);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  // Removed outright (logrotate's "create" without a rename of ours to see): a fresh file again.
  await rm(path);
  await audit.write(record(3));
  assert.deepEqual((await lines(path)).map((r) => (r.cmd as string[])[1]), ['3']);
  // A reopen asked for by SIGHUP opens the path again even when the inode still matches.
  audit.reopen();
  await audit.write(record(4));
  assert.deepEqual((await lines(path)).map((r) => (r.cmd as string[])[1]), ['3', '4']);
  assert.equal(logged().filter((l) => l.msg === 'audit log reopened').length, 3);
  await audit.close();
});

test('a failing audit write is counted in the metrics and never fails the audited call', async () => {
  const metrics = new DaemonMetrics();
  const { logger, lines: logged } = capture();
  // /dev/full: opening works, every write fails with ENOSPC.
  const audit = await AuditLog.open('/dev/full', logger, { onWriteFailure: metrics.countAuditWriteFailure });
  await Promise.all([audit.write(record(1)), audit.write(record(2))]);
  await audit.write(record(3));
  await audit.close();
  assert.match(await metrics.text(), /^gvisor_cri_audit_write_failures_total 3$/m);
  const errors = logged().filter((l) => l.level === 50);
  assert.ok(errors.length >= 1 && errors.every((l) => /records lost/.test(String(l.msg))));
});

test('the daemon fixes loose state and run dirs at start and reopens its audit log on SIGHUP', async () => {
  const base = await mkdtemp(join(tmpdir(), 'gvcri-e2e-hardening-'));
  const dirs = { dir: base, socket: join(base, 'run', 'gvisor-cri.sock'), stateDir: join(base, 'state'), runDir: join(base, 'run'), cniConfDir: join(base, 'cni'), logDir: join(base, 'logs') };
  for (const d of [dirs.stateDir, dirs.runDir]) {
    await mkdir(d);
    await chmod(d, 0o755);
  }
  const d = await startDaemon({ reuse: dirs });
  try {
    for (const p of [dirs.stateDir, dirs.runDir]) assert.equal((await stat(p)).mode & 0o7777, 0o700, p);
    assert.match(d.output(), /state-dir was reachable by other users: mode set to 0700/);
    assert.match(d.output(), /run-dir was reachable by other users: mode set to 0700/);

    const audit = join(base, 'audit.log');
    const execSync = (): Promise<unknown> => d.call('runtime', 'ExecSync', { container_id: 'no-such-container', cmd: ['true'], timeout: 1 }).catch(() => undefined);
    await execSync();
    await rename(audit, `${audit}.1`);
    d.proc.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    while (!/SIGHUP: reopening the audit log/.test(d.output())) {
      assert.ok(Date.now() < deadline, 'no SIGHUP line in the log');
      await new Promise((r) => setTimeout(r, 20));
    }
    await execSync();
    assert.equal(d.proc.exitCode, null, 'SIGHUP did not stop the daemon');
    assert.equal((await lines(`${audit}.1`)).length, 1);
    const fresh = await lines(audit);
    assert.equal(fresh.length, 1);
    assert.equal((fresh[0]!.container as { id: string }).id, 'no-such-container');
  } finally {
    await d.cleanup();
    await rm(base, { recursive: true, force: true });
  }
});
