import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { bpfHex, compileSeccomp } from '../../runtime/seccomp/bpf.js';
import { seccompHelperElf } from '../../runtime/seccomp/exec-helper.js';

// The helper is x86-64 code; on this host it runs under the host kernel's seccomp.
const skip = process.arch !== 'x64' ? 'the exec helper is x86-64 code' : false;
let dir: string;
let helper: string;
const denyChmod = bpfHex(compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod', 'fchmod', 'fchmodat', 'fchmodat2'], action: 'SCMP_ACT_ERRNO' }] }, 'test'));

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gvcri-seccomp-helper-'));
  helper = join(dir, 'helper');
  await writeFile(helper, seccompHelperElf());
  await chmod(helper, 0o755);
  await writeFile(join(dir, 'file'), 'x');
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const run = (args: string[], env: Record<string, string> = { PATH: '/usr/bin:/bin' }) => {
  const r = spawnSync(helper, args, { env, encoding: 'utf8', timeout: 10_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
};

test('installs the filter, then runs the program found on $PATH with its arguments', { skip }, () => {
  const r = run([denyChmod, 'sh', '-c', 'grep Seccomp: /proc/self/status; chmod 600 "$0" || echo refused', join(dir, 'file')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Seccomp:\s+2\nrefused\n$/);
  assert.match(r.stderr, /Operation not permitted/);
});

test('an absolute path runs as is; no $PATH means the usual default', { skip }, () => {
  assert.equal(run([denyChmod, '/bin/sh', '-c', 'echo "$#$0"', 'a']).stdout, '0a\n');
  assert.equal(run([denyChmod, 'sh', '-c', 'echo ok'], {}).stdout, 'ok\n');
});

test('failures: 127 for a program not found, 126 otherwise, with a line on stderr', { skip }, () => {
  const missing = run([denyChmod, 'no-such-program']);
  assert.equal(missing.code, 127);
  assert.equal(missing.stderr, 'no-such-program: executable file not found in $PATH\n');
  assert.equal(run([denyChmod, '/no/such/file']).code, 127);
  const notExecutable = run([denyChmod, join(dir, 'file')]);
  assert.equal(notExecutable.code, 126);
  assert.match(notExecutable.stderr, /cannot execute/);
  const badHex = run(['0g', 'true']);
  assert.equal(badHex.code, 126);
  assert.match(badHex.stderr, /not a hex-encoded BPF program/);
  const usage = run([denyChmod]);
  assert.equal(usage.code, 126);
  assert.match(usage.stderr, /usage/);
  // A program the kernel rejects (a jump past its end) is never silently skipped.
  const invalid = run(['1500ff0000000000', 'true']);
  assert.equal(invalid.code, 126);
  assert.match(invalid.stderr, /installing the seccomp filter failed/);
});
