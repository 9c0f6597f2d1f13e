import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCaptured } from '../../common/index.js';
import { silentLogger } from '../../cri-api/logger.js';
import { Reaper, ReaperLauncher } from '../../runtime/index.js';

// The launcher the daemon gives the network module: tools fork from the reaper, output comes back through files.
describe('ReaperLauncher', () => {
  let dir: string;
  let scratch: string;
  let reaper: Reaper;
  let launcher: ReaperLauncher;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gvcri-launcher-'));
    scratch = join(dir, 'launch');
    const r = await Reaper.start(silentLogger);
    assert.ok(r, 'the reaper runs here');
    reaper = r;
    launcher = await ReaperLauncher.open(reaper, scratch);
  });
  after(async () => {
    reaper.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('passes stdin and env, captures stdout and stderr apart and the exit code, and leaves no files', async () => {
    const r = await runCaptured({ file: 'sh', args: ['-c', 'cat; echo "$GVCRI_A/$GVCRI_B" >&2; exit 3'], input: '{"in":1}\n', env: { GVCRI_A: 'x=y', GVCRI_B: '' }, timeoutMs: 10_000 }, launcher);
    assert.deepEqual(r, { exitCode: 3, timedOut: false, cancelled: false, notRun: undefined, stdout: '{"in":1}', stderr: 'x=y/' });
    assert.deepEqual(await readdir(scratch), []);
  });

  it('keeps the daemon environment (PATH) under the given variables, and stdin empty without input', async () => {
    const r = await runCaptured({ file: 'sh', args: ['-c', 'echo "$PATH" | grep -q bin && wc -c'], timeoutMs: 10_000 }, launcher);
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout.trim(), '0');
  });

  it('reports a program that cannot be executed with the reason', async () => {
    const r = await runCaptured({ file: join(dir, 'no-such-tool'), args: [], timeoutMs: 10_000 }, launcher);
    assert.equal(r.exitCode, 127);
    assert.match(r.stderr, /exec .*no-such-tool: No such file or directory/);
  });

  it('kills a program at its timeout and says so', async () => {
    const r = await runCaptured({ file: 'sleep', args: ['30'], timeoutMs: 300 }, launcher);
    assert.equal(r.timedOut, true);
    assert.equal(r.exitCode, undefined);
    assert.deepEqual(await readdir(scratch), []);
  });

  it('kills a program when its signal aborts, also one aborted before it started', async () => {
    const controller = new AbortController();
    const pending = runCaptured({ file: 'sleep', args: ['30'], timeoutMs: 0, signal: controller.signal }, launcher);
    controller.abort();
    const r = await pending;
    assert.equal(r.cancelled, true);
    assert.equal(r.exitCode, undefined);
    const early = await runCaptured({ file: 'sleep', args: ['30'], timeoutMs: 0, signal: controller.signal }, launcher);
    assert.equal(early.cancelled, true);
    assert.deepEqual(await readdir(scratch), []);
  });

  it('hands a call the line protocol cannot carry to execa', async () => {
    const r = await runCaptured({ file: 'sh', args: ['-c', 'printf "%s" "$1"', 'sh', 'two\nlines'], timeoutMs: 10_000 }, launcher);
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, 'two\nlines');
  });

  it('is unavailable once the reaper is closed, and runCaptured then uses execa', async () => {
    const r2 = await Reaper.start(silentLogger);
    assert.ok(r2);
    const l2 = await ReaperLauncher.open(r2, join(dir, 'launch2'));
    assert.equal(l2.available, true);
    r2.close();
    assert.equal(l2.available, false);
    const r = await runCaptured({ file: 'sh', args: ['-c', 'echo ok'], timeoutMs: 10_000 }, l2);
    assert.deepEqual(r, { exitCode: 0, timedOut: false, cancelled: false, notRun: undefined, stdout: 'ok', stderr: '' });
  });

  it('reports a call whose reaper died under it as not run', async () => {
    const r3 = await Reaper.start(silentLogger);
    assert.ok(r3);
    const l3 = await ReaperLauncher.open(r3, join(dir, 'launch3'));
    const pending = runCaptured({ file: 'sleep', args: ['3'], timeoutMs: 60_000 }, l3);
    // The perl process itself, not its child: the call must not hang on a dead reaper.
    const perl = (r3 as unknown as { proc: { pid: number } }).proc.pid;
    process.kill(perl, 'SIGKILL');
    const r = await pending;
    assert.equal(r.exitCode, undefined);
    assert.match(r.notRun ?? '', /reaper exited/);
  });
});
