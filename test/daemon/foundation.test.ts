import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { REPO_ROOT, runCli, spawnDaemon, startDaemon, testConflist, type TestDaemon } from '../helpers/daemon.js';
import { createCriClients, startCriServer } from '../../cri-api/server.js';
import { silentLogger } from '../../cri-api/logger.js';

interface Rpc { service: string; method: string; path: string; server_streaming: boolean }
const services = JSON.parse(await readFile(join(REPO_ROOT, 'test/fixtures/cri-golden/services.json'), 'utf8')) as { rpcs: Rpc[] };

const daemons: TestDaemon[] = [];
after(async () => {
  for (const d of daemons) await d.cleanup();
});

const ready = await startDaemon({ conflist: testConflist(1) });
daemons.push(ready);

test('Version names gvisor-cri, CRI v1, our package version with its build commit, and the runsc it drives', async () => {
  const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = await ready.call<Record<string, string>>('runtime', 'Version', { version: '0.1.0' });
  const { runtime_version, ...rest } = v;
  assert.deepEqual(rest, { version: '0.1.0', runtime_name: 'gvisor-cri', runtime_api_version: 'v1' });
  const escaped = pkg.version.replace(/\./g, '\\.');
  assert.match(runtime_version!, new RegExp(`^${escaped}\\+([0-9a-f]{7,40}(-dirty)?|unknown) \\(runsc 0\\.0~\\d+\\.\\d+\\)$`));
});

test('Status: runtime and network ready on a set-up machine; verbose adds the config; handlers listed', async () => {
  const s = await ready.call<{ status: { conditions: { type: string; status: boolean; reason: string; message: string }[] }; info: Record<string, string>; runtime_handlers: { name: string }[] }>('runtime', 'Status', { verbose: true });
  const cond = Object.fromEntries(s.status.conditions.map((c) => [c.type, c]));
  assert.equal(cond.RuntimeReady?.status, true, JSON.stringify(cond.RuntimeReady));
  assert.equal(cond.NetworkReady?.status, true, JSON.stringify(cond.NetworkReady));
  const info = JSON.parse(s.info.config!) as { runsc: { path: string; version: string; platform: string } };
  assert.equal(info.runsc.platform, 'systrap');
  assert.match(info.runsc.version, /runsc version/);
  assert.deepEqual(s.runtime_handlers.map((h) => h.name), ['', 'runsc']);
});

test('RuntimeConfig reports cgroupfs', async () => {
  const r = await ready.call<{ linux: { cgroup_driver: string } }>('runtime', 'RuntimeConfig', {});
  assert.equal(r.linux.cgroup_driver, 'CGROUPFS');
});

test('UpdateRuntimeConfig records the pod CIDR and Status verbose shows it', async () => {
  await ready.call('runtime', 'UpdateRuntimeConfig', { runtime_config: { network_config: { pod_cidr: '10.244.3.0/24' } } });
  const s = await ready.call<{ info: Record<string, string> }>('runtime', 'Status', { verbose: true });
  assert.equal((JSON.parse(s.info.config!) as { podCidr: string }).podCidr, '10.244.3.0/24');
});

test('every RPC of upstream CRI is served and implemented', async () => {
  const client = new grpc.Client(`unix://${ready.socket}`, grpc.credentials.createInsecure());
  after(() => client.close());
  const identity = (b: Buffer): Buffer => b;
  assert.equal(services.rpcs.length, 41);
  for (const rpc of services.rpcs) {
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      const deadline = Date.now() + 5000;
      if (rpc.server_streaming) {
        const call = client.makeServerStreamRequest(rpc.path, identity, identity, Buffer.alloc(0), new grpc.Metadata(), { deadline });
        call.on('data', () => call.cancel());
        call.on('error', (e: grpc.ServiceError) => resolve(e));
        call.on('end', () => resolve(null));
        // A stream that stays open is served: cancel it and count that as served.
        setTimeout(() => call.cancel(), 300);
      } else {
        client.makeUnaryRequest(rpc.path, identity, identity, Buffer.alloc(0), { deadline }, (e) => resolve(e));
      }
    });
    assert.notEqual(err?.code, grpc.status.UNIMPLEMENTED, `${rpc.path}: ${err?.details}`);
  }
});

test('an RPC without a handler answers UNIMPLEMENTED with its name', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-unimpl-'));
  const server = await startCriServer(join(dir, 'cri.sock'), {}, silentLogger);
  const clients = createCriClients(join(dir, 'cri.sock'));
  try {
    await assert.rejects(
      new Promise((resolve, reject) => clients.runtime.CheckpointContainer({ container_id: 'x', location: '/tmp/x.tar' }, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)))),
      (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.UNIMPLEMENTED);
        assert.equal(err.details, 'CheckpointContainer is not implemented yet');
        return true;
      },
    );
  } finally {
    clients.close();
    await server.shutdown(1000);
    await rm(dir, { recursive: true, force: true });
  }
});

test('the socket is mode 0660', async () => {
  const st = await stat(ready.socket);
  assert.equal(st.mode & 0o777, 0o660);
});

test('a second daemon on the same socket is refused with a clear message', async () => {
  const r = await runCli(['--socket', ready.socket, '--state-dir', join(ready.dir, 'state2'), '--run-dir', join(ready.dir, 'run2'), '--cni-conf-dir', ready.cniConfDir, '--config', join(ready.dir, 'config.toml')]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /already serving on/);
  // The first one still answers.
  await ready.call('runtime', 'Version', {});
});

test('NetworkReady is false with a reason when the CNI dir is empty', async () => {
  const d = await startDaemon({ args: ['--default-network=false'] });
  daemons.push(d);
  const s = await d.call<{ status: { conditions: { type: string; status: boolean; reason: string; message: string }[] } }>('runtime', 'Status', {});
  const net = s.status.conditions.find((c) => c.type === 'NetworkReady')!;
  assert.equal(net.status, false);
  assert.equal(net.reason, 'NetworkPluginNotReady');
  assert.match(net.message, new RegExp(d.cniConfDir));
});

test('SIGTERM stops the daemon cleanly: exit 0 and the socket removed; a stale socket is replaced', async () => {
  const d = await startDaemon({ conflist: testConflist(1) });
  const code = await d.stop('SIGTERM');
  assert.equal(code, 0, d.output());
  await assert.rejects(stat(d.socket), { code: 'ENOENT' });
  // SIGKILL leaves the socket behind; the next daemon must take it over.
  const again = await startDaemon({ reuse: d, conflist: testConflist(1) });
  again.proc.kill('SIGKILL');
  await new Promise((r) => again.proc.once('exit', r));
  assert.ok((await stat(d.socket)).isSocket());
  const third = await startDaemon({ reuse: d, conflist: testConflist(1) });
  daemons.push(third);
  await third.call('runtime', 'Version', {});
});

test('an invalid flag or config exits 2 with one line naming the key', async () => {
  const bad = await runCli(['--stream-port', '99999']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim(), 'gvisor-cri: flag stream-port: must be between 0 and 65535, got 99999');
  const unknown = await runCli(['--no-such-flag', 'x']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown flag --no-such-flag/);
});

test('`gvisor-cri config` prints the effective config as TOML', async () => {
  const r = await runCli(['config', '--config', '/nonexistent-default-is-not-ok.toml']);
  assert.equal(r.code, 2, 'a config file named explicitly must exist');
  const ok = await runCli(['config', '--stream-port', '1234', '--config', join(ready.dir, 'config.toml')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^stream_port = 1234$/m);
  assert.match(ok.stdout, /^socket = "\/run\/gvisor-cri\/gvisor-cri.sock"$/m);
});

test('`gvisor-cri check` passes on a set-up machine', async () => {
  const r = await runCli(['check', '--config', join(ready.dir, 'config.toml'), '--cni-conf-dir', ready.cniConfDir, '--state-dir', join(ready.dir, 'state-check'), '--run-dir', join(ready.dir, 'run-check'), '--socket', join(ready.dir, 'run-check', 'x.sock')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^pass {2}sandbox boots \(systrap\)/m);
  assert.match(r.stdout, /^pass {2}runsc helper \(perl subreaper\)/m);
  assert.match(r.stdout, /all required checks passed/);
});

test('`gvisor-cri check` checks a configured trace session: an absent sink socket fails with a hint', async () => {
  const session = join(ready.dir, 'trace-check.json');
  await writeFile(session, JSON.stringify({ trace_session: { name: 'Default', points: [{ name: 'container/start' }], sinks: [{ name: 'remote', config: { endpoint: join(ready.dir, 'no-falco.sock') } }] } }));
  const args = ['check', '--json', '--config', join(ready.dir, 'config.toml'), '--trace-session-config', session, '--cni-conf-dir', ready.cniConfDir, '--state-dir', join(ready.dir, 'state-check'), '--run-dir', join(ready.dir, 'run-check'), '--socket', join(ready.dir, 'run-check', 'x.sock')];
  const r = await runCli(args);
  assert.equal(r.code, 1, r.stderr);
  const check = (JSON.parse(r.stdout) as { checks: { name: string; ok: boolean; required: boolean; detail: string; hint: string }[] }).checks.find((c) => c.name === 'trace session config')!;
  assert.equal(check.ok, false);
  assert.equal(check.required, true);
  assert.match(check.detail, /no-falco\.sock absent: pods would fail to start/);
  assert.match(check.hint, /ignore_setup_error/);
});

test('`gvisor-cri check` fails with a hint when --runsc points to a missing file; --json for machines', async () => {
  const args = ['check', '--config', join(ready.dir, 'config.toml'), '--runsc', '/nonexistent/runsc', '--cni-conf-dir', ready.cniConfDir, '--state-dir', join(ready.dir, 'state-check'), '--run-dir', join(ready.dir, 'run-check'), '--socket', join(ready.dir, 'run-check', 'x.sock')];
  const r = await runCli(args);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^FAIL {2}runsc binary/m);
  assert.match(r.stdout, /hint: install runsc from bookworm-backports/);
  const j = await runCli([...args, '--json']);
  assert.equal(j.code, 1, j.stderr);
  assert.ok(j.stdout.startsWith('{'), `no JSON on stdout; stderr: ${j.stderr}`);
  const parsed = JSON.parse(j.stdout) as { ok: boolean; checks: { name: string; ok: boolean; required: boolean; hint: string }[] };
  assert.equal(parsed.ok, false);
  const bin = parsed.checks.find((c) => c.name === 'runsc binary')!;
  assert.equal(bin.ok, false);
  assert.ok(bin.hint.length > 0);
});

test('--version prints the version', () => {
  const p = spawnDaemon(['--version']);
  return new Promise<void>((resolve) => {
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => {
      assert.equal(code, 0);
      assert.match(out, /^gvisor-cri \d+\.\d+\.\d+/);
      resolve();
    });
  });
});
