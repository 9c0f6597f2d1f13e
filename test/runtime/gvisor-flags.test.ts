import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import { ConfigError, parseArgs, loadConfig } from '../../daemon/config.js';
import { allowlistEntryProblem, flagAnnotations, podRunscFlags, recordedRunscFlags, runscCallFlags } from '../../runtime/runsc/gvisor-flags.js';
import { loadTraceSessionConfig, parseTraceList, TraceSessionConfigError } from '../../runtime/runsc/trace-session.js';

function refused(fn: () => unknown): CriError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CriError, `expected a CriError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to throw');
}

test('a dev.gvisor.flag annotation not on the allow-list is refused with INVALID_ARGUMENT naming it, the allowed names and the option', () => {
  const err = refused(() => podRunscFlags({ 'dev.gvisor.flag.net-raw': 'true', 'dev.gvisor.flag.host-uds': 'all', app: 'x' }, ['net-raw']));
  assert.equal(err.code, GrpcStatus.INVALID_ARGUMENT);
  assert.match(err.message, /annotation dev\.gvisor\.flag\.host-uds:/);
  assert.doesNotMatch(err.message, /flag\.net-raw:/);
  assert.match(err.message, /allowed flags: net-raw/);
  assert.match(err.message, /gvisor-flag-allowlist/);
});

test('with an empty allow-list every dev.gvisor.flag annotation is refused, and the message says none is allowed', () => {
  const err = refused(() => podRunscFlags({ 'dev.gvisor.flag.strace': 'true' }, []));
  assert.equal(err.code, GrpcStatus.INVALID_ARGUMENT);
  assert.match(err.message, /dev\.gvisor\.flag\.strace/);
  assert.match(err.message, /no runsc flag may be set per pod/);
});

test('allowed flags are returned; other annotations are not flags; an empty value is refused', () => {
  assert.deepEqual(podRunscFlags({ 'dev.gvisor.flag.net-raw': 'true', 'dev.gvisor.spec.x': 'y', 'dev.gvisor.flagx': 'z' }, ['net-raw']), { 'net-raw': 'true' });
  assert.deepEqual(podRunscFlags({}, []), {});
  const err = refused(() => podRunscFlags({ 'dev.gvisor.flag.net-raw': ' ' }, ['net-raw']));
  assert.equal(err.code, GrpcStatus.INVALID_ARGUMENT);
  assert.match(err.message, /needs a value/);
});

test('flags reach runsc as spec annotations plus --allow-flag-override (create/start), or as global flags (exec); none without flags', () => {
  const flags = { 'net-raw': 'true', strace: 'true' };
  assert.deepEqual(flagAnnotations(flags), { 'dev.gvisor.flag.net-raw': 'true', 'dev.gvisor.flag.strace': 'true' });
  assert.deepEqual(runscCallFlags(flags, 'spec'), ['--allow-flag-override']);
  assert.deepEqual(runscCallFlags(flags, 'exec'), ['--net-raw=true', '--strace=true']);
  assert.deepEqual(runscCallFlags({}, 'spec'), []);
  assert.deepEqual(runscCallFlags(undefined, 'exec'), []);
  assert.deepEqual(recordedRunscFlags({ 'dev.gvisor.flag.net-raw': 'true', other: 'x' }), { 'net-raw': 'true' });
});

test('flags gvisor-cri manages itself, and non-names, cannot be allow-listed; the config refuses them', async () => {
  for (const name of ['root', 'network', 'overlay2', 'allow-flag-override', 'pod-init-config']) assert.match(allowlistEntryProblem(name) ?? '', /set by gvisor-cri itself/, name);
  assert.match(allowlistEntryProblem('--net-raw') ?? '', /not a runsc flag name/);
  assert.equal(allowlistEntryProblem('net-raw'), undefined);
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-flags-'));
  try {
    const file = join(dir, 'c.toml');
    await writeFile(file, 'gvisor_flag_allowlist = ["net-raw", "network"]\n');
    await assert.rejects(loadConfig(parseArgs(['--config', file]).flags), (err: unknown) => err instanceof ConfigError && /gvisor-flag-allowlist: "network" is set by gvisor-cri itself/.test(err.message));
    await writeFile(file, 'gvisor_flag_allowlist = ["net-raw"]\ntrace_session_config = "relative.json"\n');
    await assert.rejects(loadConfig(parseArgs(['--config', file]).flags), (err: unknown) => err instanceof ConfigError && /trace-session-config: must be an absolute path/.test(err.message));
    await writeFile(file, 'gvisor_flag_allowlist = ["net-raw"]\n');
    const c = await loadConfig(parseArgs(['--config', file, '--trace-session-config', '/etc/x.json']).flags);
    assert.deepEqual(c.gvisorFlagAllowlist, ['net-raw']);
    assert.equal(c.traceSessionConfig, '/etc/x.json');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a trace session file is checked: readable, JSON, runsc\'s shape; remote sinks need an absolute endpoint', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-trace-'));
  try {
    const file = join(dir, 's.json');
    const bad = async (text: string | undefined, what: RegExp): Promise<void> => {
      if (text !== undefined) await writeFile(file, text);
      await assert.rejects(loadTraceSessionConfig(file), (err: unknown) => err instanceof TraceSessionConfigError && err.message.startsWith(`trace-session-config ${file}: `) && what.test(err.message));
    };
    await bad(undefined, /cannot be read/);
    await bad('{"trace_session": ', /not JSON/);
    await bad('{"session": {}}', /expected \{"trace_session"/);
    await bad('{"trace_session": {"name": "mine", "points": [{"name": "sentry/execve"}], "sinks": [{"name": "remote", "config": {"endpoint": "/x"}}]}}', /name: must be "Default"/);
    await bad('{"trace_session": {"name": "Default", "points": [], "sinks": []}}', /points: expected a non-empty list/);
    await bad('{"trace_session": {"name": "Default", "points": [{"name": "sentry/execve"}], "sinks": [{"name": "remote", "config": {}}]}}', /needs config\.endpoint/);
    await writeFile(file, JSON.stringify({ trace_session: { name: 'Default', points: [{ name: 'sentry/execve' }], sinks: [{ name: 'remote', config: { endpoint: '/run/x.sock' }, ignore_setup_error: true }] } }));
    const ok = await loadTraceSessionConfig(file);
    assert.equal(ok.name, 'Default');
    assert.deepEqual(ok.points, ['sentry/execve']);
    assert.deepEqual(ok.sinks, [{ name: 'remote', endpoint: '/run/x.sock', ignoreSetupError: true }]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('`runsc trace list` output (runsc 20240729) is parsed into sessions and sinks', () => {
  assert.deepEqual(parseTraceList('SESSIONS (1)\n"Default"\n\tSink: "remote", dropped: 3\n'), [{ name: 'Default', sinks: [{ name: 'remote', dropped: 3 }] }]);
  assert.deepEqual(parseTraceList('SESSIONS (0)\n'), []);
});
