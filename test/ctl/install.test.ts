// gvisor-cri install into a temporary root: the unit systemd would load, a
// default config that parses back to the defaults, an existing config kept.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { runCli } from '../helpers/daemon.js';
import { defaultConfig, parseTomlConfig } from '../../daemon/config.js';
import { DAEMON_NODE_FLAGS, INSTALL_DIR, systemdWord } from '../../daemon/install.js';

const root = await mkdtemp(join(tmpdir(), 'gvcri-install-'));
after(() => rm(root, { recursive: true, force: true }));

const unitPath = join(root, 'etc/systemd/system/gvisor-cri.service');
const configPath = join(root, 'etc/gvisor-cri/config.toml');

async function hasSystemdAnalyze(): Promise<boolean> {
  return (await execa('systemd-analyze', ['--version'], { reject: false })).exitCode === 0;
}

test('install writes the unit and a default config, says so, and starts nothing', async () => {
  const r = await runCli(['install', '--root', root]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.split('\n').slice(0, 2).join('\n'), `written ${unitPath}\nwritten ${configPath}`);
  assert.match(r.stdout, /systemctl daemon-reload && systemctl enable --now gvisor-cri/);

  const unit = await readFile(unitPath, 'utf8');
  assert.match(unit, new RegExp(`^ExecStart=${process.execPath} --max-semi-space-size=2 --external-memory-accounted-in-global-limit --initial-heap-size=64 ${INSTALL_DIR}/bin/gvisor-cri --config /etc/gvisor-cri/config.toml$`, 'm'));
  for (const line of ['Type=simple', 'Restart=always', 'KillMode=process', 'Delegate=yes', 'After=network-online.target local-fs.target', 'WantedBy=multi-user.target']) {
    assert.match(unit, new RegExp(`^${line}$`, 'm'), line);
  }
  assert.match(unit, /^LimitNOFILE=\d+$/m);
  assert.doesNotMatch(unit, /^RuntimeDirectory=/m, 'systemd would delete the runsc state on stop');
  assert.doesNotMatch(unit, /@[A-Z_]+@/);

  const text = await readFile(configPath, 'utf8');
  assert.match(text, /^# gvisor-cri configuration/);
  const parsed = parseTomlConfig(text, configPath);
  assert.deepEqual({ ...parsed, config: '' }, { ...defaultConfig(), config: '' });
});

test('systemd-analyze verify accepts the unit (skipped where systemd-analyze is absent)', async (t) => {
  if (!(await hasSystemdAnalyze())) {
    t.skip('systemd-analyze not installed');
    return;
  }
  await runCli(['install', '--root', root]);
  const v = await execa('systemd-analyze', ['verify', unitPath], { reject: false, env: { SYSTEMD_LOG_LEVEL: 'warning' } });
  // verify also reports on units this one merely names (kubelet.service is absent here); only our own lines count.
  const ours = `${v.stdout}\n${v.stderr}`.split('\n').filter((l) => l.includes('gvisor-cri.service') && !/kubelet\.service/.test(l));
  assert.deepEqual(ours, [], `${v.stdout}\n${v.stderr}`);
});

test('an existing config is kept byte for byte; the unit is rewritten; --prefix names the install dir', async () => {
  const mine = '# my settings\nsocket = "/run/mine.sock"\n';
  await mkdir(join(root, 'etc/gvisor-cri'), { recursive: true });
  await writeFile(configPath, mine);
  await writeFile(unitPath, 'stale');
  const r = await runCli(['install', '--root', root, '--prefix', '/opt/gvisor cri']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.split('\n').slice(0, 2).join('\n'), `written ${unitPath}\nkept ${configPath} (exists; not overwritten)`);
  assert.equal(await readFile(configPath, 'utf8'), mine);
  assert.match(await readFile(unitPath, 'utf8'), /^ExecStart=\S+ --max-semi-space-size=2 --external-memory-accounted-in-global-limit --initial-heap-size=64 "\/opt\/gvisor cri\/bin\/gvisor-cri" --config /m);
});

test('bad arguments exit 2 with one line', async () => {
  for (const args of [['--bogus'], ['--prefix', 'relative'], ['--root']]) {
    const r = await runCli(['install', ...args]);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, /^gvisor-cri install: .*\n$/);
  }
});

test('bin/gvisor-cri runs its node with the V8 flags the unit gives the daemon', async () => {
  const launcher = (await readFile(new URL('../../../bin/gvisor-cri', import.meta.url), 'utf8')).split('\n')[1];
  const flags = /exec "\$n" (.*) "\$0" "\$@"$/.exec(launcher)?.[1];
  assert.equal(flags, DAEMON_NODE_FLAGS.join(' '), `bin/gvisor-cri's launcher line: ${launcher}`);
});

test('systemd words: % is escaped, spaces and quotes are quoted', () => {
  assert.equal(systemdWord('/usr/bin/node'), '/usr/bin/node');
  assert.equal(systemdWord('/opt/100%/node'), '/opt/100%%/node');
  assert.equal(systemdWord('/opt/a b/node'), '"/opt/a b/node"');
  assert.equal(systemdWord('/opt/a"b'), '"/opt/a\\"b"');
});
