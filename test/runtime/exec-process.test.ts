import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../cri-api/logger.js';
import { startExec, startTerminalExec, type ExecProcess, type TerminalExecProcess } from '../../runtime/runsc/exec-process.js';
import { Reaper } from '../../runtime/runsc/reaper.js';

async function readAll(s: Readable | undefined): Promise<string> {
  if (!s) return '';
  let out = '';
  for await (const chunk of s) out += (chunk as Buffer).toString();
  return out;
}

/** Feeds `input` to stdin, then reads both outputs to their ends and the exit. */
async function drive(p: ExecProcess, input: string): Promise<{ stdout: string; stderr: string; exitCode: number | undefined; signal: string | undefined }> {
  p.stdin?.end(input);
  const [stdout, stderr, exit] = await Promise.all([readAll(p.stdout), readAll(p.stderr), p.exited]);
  return { stdout, stderr, exitCode: exit.exitCode, signal: exit.signal };
}

let dir: string;
let reaper: Reaper;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gvcri-exec-process-'));
  const r = await Reaper.start(silentLogger);
  assert.ok(r, 'the reaper runs here');
  reaper = r;
});
after(async () => {
  reaper.close();
  await rm(dir, { recursive: true, force: true });
});

// The process runsc exec runs as (here a shell standing in for runsc): its stdio streamed, its exit, its kill.
describe('startExec', () => {
  for (const via of ['reaper', 'execa'] as const) {
    const start = (args: string[], base: string, want = { stdin: true, stdout: true, stderr: true }): Promise<ExecProcess> =>
      startExec({ binary: '/bin/sh', args: ['-c', ...args], want, fifoBase: join(dir, base), reaper: via === 'reaper' ? reaper : undefined });

    it(`streams stdin to stdout, stderr apart, and the exit code (${via})`, async () => {
      const p = await start(['cat; echo oops >&2; exit 3'], `${via}-1`);
      assert.deepEqual(await drive(p, 'hello\nworld\n'), { stdout: 'hello\nworld\n', stderr: 'oops\n', exitCode: 3, signal: undefined });
      await p.dispose();
      assert.deepEqual(await readdir(dir).then((names) => names.filter((n) => n.startsWith(`${via}-1`))), []);
    });

    it(`gives streams only for what is wanted; an unwanted stdin reads as empty (${via})`, async () => {
      const p = await start(['wc -c; echo gone >&2'], `${via}-2`, { stdin: false, stdout: true, stderr: false });
      assert.equal(p.stdin, undefined);
      assert.equal(p.stderr, undefined);
      assert.deepEqual(await drive(p, ''), { stdout: '0\n', stderr: '', exitCode: 0, signal: undefined });
      await p.dispose();
    });

    it(`keeps output written just before the exit (${via})`, async () => {
      const p = await start(['head -c 300000 /dev/zero'], `${via}-3`, { stdin: false, stdout: true, stderr: true });
      const r = await drive(p, '');
      assert.equal(r.stdout.length, 300000);
      assert.equal(r.exitCode, 0);
      await p.dispose();
    });

    it(`kill() ends it with SIGKILL (${via})`, async () => {
      const p = await start(['exec sleep 60'], `${via}-4`);
      p.kill();
      assert.deepEqual(await drive(p, ''), { stdout: '', stderr: '', exitCode: undefined, signal: 'SIGKILL' });
      await p.dispose();
    });
  }
});

// The same with a terminal the reaper makes: the process's session and controlling terminal, sized, relayed.
describe('startTerminalExec', () => {
  const start = (script: string, base: string): Promise<TerminalExecProcess> =>
    startTerminalExec({ binary: '/bin/sh', args: ['-c', script], fifoBase: join(dir, base), reaper, size: { cols: 91, rows: 17 } });

  it('runs on a terminal of the asked size, takes input and its end, and gives the exit code and all output', async () => {
    const p = await start('stty size; tty; read x; echo got=$x; cat; echo tail; exit 5', 't1');
    let out = '';
    p.output.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('/dev/pts/') && !out.includes('hello')) p.write(Buffer.from('hello\n'));
      if (out.includes('got=hello') && !out.includes('more')) {
        p.write(Buffer.from('more\n'));
        p.endInput();
      }
    });
    const ended = new Promise<void>((resolve) => p.output.once('close', () => resolve()));
    const exit = await p.exited;
    await ended;
    assert.deepEqual(exit, { exitCode: 5, signal: undefined, failure: undefined });
    assert.match(out, /^17 91\r\n\/dev\/pts\/\d+\r\n/);
    assert.match(out, /got=hello\r\n/);
    assert.ok(out.endsWith('more\r\ntail\r\n'), JSON.stringify(out.slice(-40)));
    await p.dispose();
    assert.deepEqual(await readdir(dir).then((names) => names.filter((n) => n.startsWith('t1'))), []);
  });

  it('follows resizes, and ^C signals its foreground process', async () => {
    // The resize travels apart from input: keep asking for the size until the new one shows, then type ^C.
    const p = await start('trap "echo got-int; exit 9" INT; echo ready; while read x; do stty size; done', 't2');
    let out = '';
    let asked = 0;
    let interrupted = false;
    p.output.on('data', (c: Buffer) => {
      out += c.toString();
      if (interrupted || !out.includes('ready')) return;
      if (out.includes('40 120')) {
        interrupted = true;
        p.write(Buffer.from('\x03'));
      } else if (asked === 0 || (out.split(' 91\r\n').length > asked && asked < 50)) {
        if (asked === 0) p.resize(120, 40);
        asked++;
        p.write(Buffer.from('size?\n'));
      }
    });
    const ended = new Promise<void>((resolve) => p.output.once('close', () => resolve()));
    assert.deepEqual(await p.exited, { exitCode: 9, signal: undefined, failure: undefined }, out);
    // The exit can come before the last output is relayed.
    await ended;
    assert.match(out, /40 120\r\n/);
    assert.match(out, /got-int/);
    await p.dispose();
  });

  it('kill() ends it with SIGKILL', async () => {
    const p = await start('exec sleep 60', 't3');
    p.kill();
    assert.deepEqual(await p.exited, { exitCode: undefined, signal: 'SIGKILL', failure: undefined });
    await p.dispose();
  });
});
