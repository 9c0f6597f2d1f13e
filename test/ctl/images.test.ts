// gvisor-cri ctl against a live daemon: version, info, the image commands
// with a real registry, and the error lines and exit codes scripts rely on.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { execa } from 'execa';
import { BIN, startDaemon, testConflist } from '../helpers/daemon.js';
import { startRegistry } from '../helpers/registry-server.js';
import { busyboxEntries, pushTestImage } from '../helpers/image-builder.js';
import { ctl } from '../helpers/ctl-run.js';

const registry = await startRegistry();
const daemon = await startDaemon({ conflist: testConflist(12) });
after(async () => {
  await daemon.cleanup();
  await registry.stop();
});

const run = (...args: string[]) => ctl(daemon.socket, args);

const first = await pushTestImage(registry.url, 'ctl/first', { tag: '1.0', layers: [{ entries: busyboxEntries(['sh', 'true']) }] });
const second = await pushTestImage(registry.url, 'ctl/second', { layers: [{ entries: [{ path: 'hello.txt', content: 'hello\n' }] }] });

test('version: table and the CRI response as JSON', async () => {
  const t = await run('version');
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^RuntimeName:\s+gvisor-cri$/m);
  assert.match(t.stdout, /^RuntimeApiVersion:\s+v1$/m);
  const j = await run('-o', 'json', 'version');
  assert.equal(j.code, 0, j.stderr);
  const v = JSON.parse(j.stdout) as { runtime_name: string; runtime_api_version: string };
  assert.equal(v.runtime_name, 'gvisor-cri');
  assert.equal(v.runtime_api_version, 'v1');
});

test('info prints Status with conditions and the verbose info expanded to JSON', async () => {
  const r = await run('info');
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { status: { conditions: { type: string; status: boolean }[] }; info: Record<string, unknown> };
  assert.ok(s.status.conditions.some((c) => c.type === 'RuntimeReady'));
  assert.ok(s.status.conditions.some((c) => c.type === 'NetworkReady'));
  assert.ok(Object.keys(s.info).length > 0);
});

test('pull without a terminal prints one line; images lists tags, sizes and short IDs', async () => {
  const p = await run('pull', first.ref);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(p.stdout, `Image is up to date for ${first.configDigest}\n`);
  assert.equal(p.stderr, '', 'no spinner without a TTY');
  const pj = await run('pull', '-o', 'json', second.ref);
  assert.equal(pj.code, 0, pj.stderr);
  assert.deepEqual(JSON.parse(pj.stdout), { image_ref: second.configDigest });

  const t = await run('images');
  assert.equal(t.code, 0, t.stderr);
  const lines = t.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^IMAGE\s+TAG\s+IMAGE ID\s+SIZE$/);
  const row = lines.find((l) => l.startsWith(`${registry.host}/ctl/first `));
  assert.ok(row, t.stdout);
  const cells = row.split(/\s{3,}/);
  assert.equal(cells[1], '1.0');
  assert.equal(cells[2], first.configDigest.slice('sha256:'.length, 'sha256:'.length + 13));
  assert.match(cells[3]!, /^\d+(\.\d+)?(B|kB|MB)$/);
  assert.ok(lines.some((l) => l.startsWith(`${registry.host}/ctl/second `) && /\slatest\s/.test(l)));

  const q = await run('images', '-q');
  assert.deepEqual(q.stdout.trim().split('\n').sort(), [first.configDigest, second.configDigest].sort());
  const j = await run('images', '-o', 'json');
  const list = JSON.parse(j.stdout) as { images: { id: string; repo_tags: string[] }[] };
  assert.deepEqual(list.images.find((i) => i.id === first.configDigest)?.repo_tags, [first.ref]);
});

test('pull on a terminal shows a spinner line, then clears it (skipped without script(1))', async (t) => {
  const script = await execa('script', ['--version'], { reject: false }).catch(() => undefined);
  if (!script || script.exitCode !== 0) {
    t.skip('script(1) not installed');
    return;
  }
  // script(1) gives the command a pseudo-terminal, as an operator's shell would.
  const cmd = [process.execPath, BIN, 'ctl', '--socket', daemon.socket, 'pull', first.ref].join(' ');
  const r = await execa('script', ['-qec', cmd, '/dev/null'], { reject: false, timeout: 60_000 });
  assert.equal(r.exitCode, 0, r.stdout);
  assert.match(r.stdout, new RegExp(`[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] Pulling ${first.ref.replaceAll('.', '\\.')} \\(\\d+\\.\\ds\\)`));
  assert.match(r.stdout, /\r\x1b\[KImage is up to date for sha256:[0-9a-f]{64}\s*$/);
});

test('pull of a missing image and bad credentials fail with one line naming the image', async () => {
  const r = await run('pull', `${registry.host}/ctl/missing:1`);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, new RegExp(`^gvisor-cri ctl: pull ${registry.host}/ctl/missing:1: .*ctl/missing`));
  assert.equal(r.stderr.trimEnd().split('\n').length, 1);
  const bad = await run('pull', first.ref, '--creds', 'nocolon');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--creds must be USER:PASSWORD/);
});

test('rmi by ID prefix and by tag; a missing image is reported and the rest still removed', async () => {
  const prefix = second.configDigest.slice('sha256:'.length, 'sha256:'.length + 8);
  const r = await run('rmi', prefix, `${registry.host}/ctl/nothing:9`, first.ref);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, `Deleted: ${prefix}\nDeleted: ${first.ref}\n`);
  assert.equal(r.stderr, `gvisor-cri ctl: rmi ${registry.host}/ctl/nothing:9: image not found\n`);
  const q = await run('images', '-q');
  assert.equal(q.stdout, '');
});

test('missing pods and containers: a clear "not found" line and exit 1', async () => {
  const p = await run('inspectp', 'nosuchpod');
  assert.equal(p.code, 1);
  assert.equal(p.stdout, '');
  assert.match(p.stderr, /^gvisor-cri ctl: pod "nosuchpod" not found/);
  for (const args of [['inspect', 'deadbeef'], ['logs', 'deadbeef'], ['exec', 'deadbeef', 'true'], ['stop', 'deadbeef'], ['rm', 'deadbeef']]) {
    const r = await run(...args);
    assert.equal(r.code, 1, args.join(' '));
    assert.match(r.stderr, /^gvisor-cri ctl: container "deadbeef" not found/, args.join(' '));
  }
  for (const args of [['stopp', 'nosuchpod'], ['rmp', 'nosuchpod']]) {
    const r = await run(...args);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^gvisor-cri ctl: pod "nosuchpod" not found/);
  }
  const empty = await run('pods', '-o', 'json');
  assert.deepEqual(JSON.parse(empty.stdout), { items: [] });
});

test('usage errors exit 2; an unreachable socket is one line that says so', async () => {
  for (const args of [['frobnicate'], ['pods', '--bogus'], ['-o', 'yaml', 'pods'], ['logs'], ['exec', 'abc'], ['stop', '-t', 'soon', 'x'], ['--timeout', 'x', 'version']]) {
    const r = await run(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^gvisor-cri ctl: /);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1);
  }
  const gone = await ctl(join(daemon.dir, 'nothing.sock'), ['pods']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^gvisor-cri ctl: list pods: cannot reach the daemon at .*nothing\.sock \(is gvisor-cri running\? see --socket\)/);
  const help = await run('--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /inspectp POD/);
});
