import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, configToToml, defaultConfig, loadConfig, OPTIONS, optionsMarkdownTable, parseArgs, parseTomlConfig } from '../../daemon/config.js';

test('defaults are the documented ones', () => {
  const c = defaultConfig();
  assert.equal(c.socket, '/run/gvisor-cri/gvisor-cri.sock');
  assert.equal(c.stateDir, '/var/lib/gvisor-cri');
  assert.equal(c.runDir, '/run/gvisor-cri');
  assert.equal(c.cniConfDir, '/etc/cni/net.d');
  assert.deepEqual(c.cniBinDirs, ['/opt/cni/bin', '/usr/lib/cni']);
  assert.equal(c.streamAddress, '127.0.0.1');
  assert.equal(c.streamPort, 0);
  assert.equal(c.logLevel, 'info');
  assert.deepEqual(c.registries, {});
});

test('TOML round trip: what `config` prints parses back to the same config', () => {
  const c = defaultConfig();
  c.streamPort = 10010;
  c.cniBinDirs = ['/a', '/b'];
  c.registries = { 'registry.k8s.io': { mirrors: ['http://127.0.0.1:5000'], insecure: false }, 'myreg.internal:5000': { mirrors: [], insecure: true, ca_file: '/etc/x.pem' } };
  const text = configToToml(c);
  const back = parseTomlConfig(text, 'x.toml');
  back.config = c.config;
  assert.deepEqual(back, c);
});

test('registries table in the documented shape', () => {
  const c = parseTomlConfig(
    `[registries."registry.k8s.io"]\nmirrors = ["http://127.0.0.1:5000", "https://mirror.example"]\n[registries."myreg.internal:5000"]\ninsecure = true\nca_file = "/etc/gvisor-cri/certs/myreg.pem"\n`,
    'c.toml',
  );
  assert.deepEqual(c.registries['registry.k8s.io'], { mirrors: ['http://127.0.0.1:5000', 'https://mirror.example'], insecure: false });
  assert.deepEqual(c.registries['myreg.internal:5000'], { mirrors: [], insecure: true, ca_file: '/etc/gvisor-cri/certs/myreg.pem' });
});

test('invalid values name the key and the problem', () => {
  const cases: [string, RegExp][] = [
    ['stream_port = 70000', /c.toml: stream-port: must be between 0 and 65535, got 70000/],
    ['log_level = "loud"', /log-level: must be one of trace, debug, info/],
    ['state_dir = "relative"', /state-dir: must be an absolute path/],
    ['no_such_key = 1', /unknown key "no_such_key"/],
    ['stream_address = "not-an-ip"', /stream-address: must be an IP address/],
    ['[registries."a.b"]\nmirrors = ["ftp://x"]', /registries."a.b".mirrors: expected a list of http/],
    ['[registries."a.b"]\ncolour = 1', /unknown key "colour"/],
    ['socket = ', /invalid TOML/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseTomlConfig(text, 'c.toml'), (err: unknown) => err instanceof ConfigError && re.test(err.message), text);
  }
});

test('flags override the file, which overrides defaults; a missing default file means defaults', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gvcri-config-'));
  try {
    const file = join(dir, 'c.toml');
    await writeFile(file, 'stream_port = 1\nlog_level = "debug"\n');
    const { flags, rest } = parseArgs(['daemon', '--config', file, '--stream-port=2', '--cni-bin-dir', '/x:/y', '--default-network', 'false']);
    assert.deepEqual(rest, ['daemon']);
    const c = await loadConfig(flags);
    assert.equal(c.streamPort, 2);
    assert.equal(c.logLevel, 'debug');
    assert.deepEqual(c.cniBinDirs, ['/x', '/y']);
    assert.equal(c.defaultNetwork, false);
    await assert.rejects(loadConfig(new Map([['config', join(dir, 'missing.toml')]])), ConfigError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  assert.throws(() => parseArgs(['--bogus']), /unknown flag --bogus/);
  assert.throws(() => parseArgs(['--socket']), /needs a value/);
  assert.throws(() => parseArgs(['--registries', 'x']), /unknown flag --registries/);
});

test('the README table is generated from the one option list and README carries it', async () => {
  const table = optionsMarkdownTable();
  for (const o of OPTIONS) assert.ok(table.includes(o.doc), o.name);
  const { readFile } = await import('node:fs/promises');
  const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(table), 'README config table is stale: run `node scripts/readme-config-table.js`');
});
