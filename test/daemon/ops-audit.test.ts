// The audit wrapper on its own: every audited RPC leaves one line, whatever the outcome,
// and RPCs bound later (Exec, Attach, PortForward) are covered by the same wrapper.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { notFound } from '../../cri-api/errors.js';
import { silentLogger } from '../../cri-api/logger.js';
import { AuditLog, auditHandlers, type AuditLookup } from '../../daemon/audit.js';
import { parseArgs, loadConfig, ConfigError } from '../../daemon/config.js';

const dir = await mkdtemp(join(tmpdir(), 'gvcri-ops-audit-'));
after(() => rm(dir, { recursive: true, force: true }));

const lookup: AuditLookup = {
  container: (id) => (id === 'c1' ? { id: 'c1', name: 'web', sandboxId: 'p1' } : undefined),
  pod: (id) => (id === 'p1' ? { id: 'p1', name: 'shop', namespace: 'prod' } : undefined),
};

const lines = async (path: string): Promise<Record<string, unknown>[]> => (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

test('Exec, Attach and PortForward requests are recorded with their target, flags and outcome', async () => {
  const path = join(dir, 'a', 'b', 'audit.log');
  const audit = await AuditLog.open(path, silentLogger);
  const handlers = auditHandlers(
    {
      Exec: async () => ({ url: 'http://127.0.0.1:1/exec/x' }),
      Attach: async () => ({ url: 'http://127.0.0.1:1/attach/x' }),
      PortForward: async (req: { pod_sandbox_id: string }) => {
        throw notFound(`pod sandbox "${req.pod_sandbox_id}" not found`);
      },
      Version: async () => ({ version: '0.1.0' }),
    },
    audit,
    lookup,
  );
  const execReq = { container_id: 'c1', cmd: ['sh', '-c', 'cat /etc/shadow'], tty: true, stdin: true, stdout: true, stderr: false, audit_request_id: 'req-7' };
  await (handlers.Exec as (req: object) => Promise<unknown>)(execReq);
  await (handlers.Attach as (req: object) => Promise<unknown>)({ container_id: 'c1', stdin: false, tty: false, stdout: true, stderr: true, audit_request_id: '' });
  await assert.rejects((handlers.PortForward as (req: object) => Promise<unknown>)({ pod_sandbox_id: 'gone', port: [80, 443] }), /not found/);
  await handlers.Version();
  await audit.close();

  assert.equal((await stat(path)).mode & 0o777, 0o600, 'the audit log is readable by root only');
  const recs = await lines(path);
  assert.equal(recs.length, 3, 'Version is not audited');
  const exec = recs[0]!;
  assert.equal(exec.rpc, 'Exec');
  assert.deepEqual(exec.pod, { id: 'p1', name: 'shop', namespace: 'prod' });
  assert.deepEqual(exec.container, { id: 'c1', name: 'web' });
  assert.deepEqual(exec.cmd, ['sh', '-c', 'cat /etc/shadow']);
  assert.equal(exec.tty, true);
  assert.equal(exec.stdin, true);
  assert.equal(exec.audit_request_id, 'req-7');
  assert.deepEqual(exec.outcome, { ok: true });
  const attach = recs[1]!;
  assert.equal(attach.rpc, 'Attach');
  assert.equal(attach.cmd, undefined);
  assert.equal(attach.stdin, false);
  assert.equal(attach.audit_request_id, undefined, 'an empty audit_request_id is left out');
  const pf = recs[2]!;
  assert.equal(pf.rpc, 'PortForward');
  assert.deepEqual(pf.pod, { id: 'gone', name: '', namespace: '' });
  assert.deepEqual(pf.ports, [80, 443]);
  assert.equal(pf.container, undefined);
  assert.deepEqual(pf.outcome, { ok: false, code: 'NOT_FOUND', message: 'pod sandbox "gone" not found' });
});

test('records append across reopenings and an empty path audits nothing', async () => {
  const path = join(dir, 'append.log');
  for (let i = 0; i < 2; i++) {
    const audit = await AuditLog.open(path, silentLogger);
    await (auditHandlers({ ExecSync: async () => ({ exit_code: i }) }, audit, lookup).ExecSync as (req: object) => Promise<unknown>)({ container_id: 'c1', cmd: ['true'] });
    await audit.close();
  }
  assert.deepEqual((await lines(path)).map((r) => r.outcome), [{ ok: true, exit_code: 0 }, { ok: true, exit_code: 1 }]);
  const off = await AuditLog.open('', silentLogger);
  assert.equal(off.enabled, false);
  const h = { ExecSync: async () => ({ exit_code: 0 }) };
  assert.equal(auditHandlers(h, off, lookup), h, 'handlers are left as they are');
});

test('audit-log must be absolute or empty', async () => {
  const file = join(dir, 'config.toml');
  await writeFile(file, '');
  const ok = await loadConfig(parseArgs(['--config', file, '--audit-log=']).flags);
  assert.equal(ok.auditLog, '');
  await assert.rejects(loadConfig(parseArgs(['--config', file, '--audit-log', 'audit.log']).flags), (err: Error) => err instanceof ConfigError && /audit-log: must be an absolute path/.test(err.message));
});
