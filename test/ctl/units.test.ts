// ctl's pure parts: argument shapes, table and time formatting, CRI log parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFlags } from '../../ctl/args.js';
import { CtlError } from '../../ctl/client.js';
import { ago, humanSize, shortId, stateName, table, toJson } from '../../ctl/format.js';
import { lastLines, parseRecord, splitRecords } from '../../ctl/cri-log-reader.js';
import { splitTag } from '../../ctl/cmd-images.js';

const specs = [{ name: 'all', short: 'a' }, { name: 'interactive', short: 'i' }, { name: 'tty', short: 't' }, { name: 'output', short: 'o', value: true }, { name: 'tail', value: true }];

test('flags: bundles, values in every spelling, stop at the command line, errors are usage errors', () => {
  const p = parseFlags(['-it', '-ojson', '--tail=5', 'x'], specs);
  assert.deepEqual([...p.flags], [['interactive', 'true'], ['tty', 'true'], ['output', 'json'], ['tail', '5']]);
  assert.deepEqual(p.positionals, ['x']);
  assert.equal(parseFlags(['-o', 'table'], specs).flags.get('output'), 'table');
  assert.equal(parseFlags(['-o=json'], specs).flags.get('output'), 'json');
  const exec = parseFlags(['-i', 'c1', 'ls', '-a', '--tail'], specs, true);
  assert.deepEqual(exec.positionals, ['c1', 'ls', '-a', '--tail']);
  assert.deepEqual(parseFlags(['--', '-a'], specs).positionals, ['-a']);
  for (const bad of [['--nope'], ['-z'], ['--tail'], ['-ai', '-az'], ['--all=yes']]) {
    assert.throws(() => parseFlags(bad, specs), (e: unknown) => e instanceof CtlError && e.exitCode === 2, bad.join(' '));
  }
});

test('formatting: relative times, sizes, IDs, states, tables', () => {
  const now = Date.UTC(2026, 0, 10);
  const ns = (msAgo: number): string => (BigInt(now - msAgo) * 1_000_000n).toString();
  assert.equal(ago(ns(500), now), 'Less than a second ago');
  assert.equal(ago(ns(30_000), now), '30 seconds ago');
  assert.equal(ago(ns(70_000), now), 'About a minute ago');
  assert.equal(ago(ns(5 * 60_000), now), '5 minutes ago');
  assert.equal(ago(ns(3 * 3600_000), now), '3 hours ago');
  assert.equal(ago(ns(3 * 86400_000), now), '3 days ago');
  assert.equal(ago('0', now), '');
  assert.equal(humanSize(0), '0B');
  assert.equal(humanSize(1234), '1.234kB');
  assert.equal(humanSize(5_120_000), '5.12MB');
  assert.equal(shortId('sha256:0123456789abcdef'), '0123456789abc');
  assert.equal(stateName('SANDBOX_NOTREADY'), 'NotReady');
  assert.equal(stateName('CONTAINER_RUNNING'), 'Running');
  assert.equal(table(['A', 'LONGER'], [['xyz', '1'], ['', '22']]), 'A     LONGER\nxyz   1\n      22\n');
  assert.deepEqual(splitTag('127.0.0.1:5000/a/b:1.0'), { repo: '127.0.0.1:5000/a/b', tag: '1.0' });
  assert.deepEqual(splitTag('127.0.0.1:5000/a/b'), { repo: '127.0.0.1:5000/a/b', tag: 'latest' });
  assert.deepEqual(splitTag('r/a@sha256:ab'), { repo: 'r/a', tag: '<none>' });
});

test('JSON output: bytes as base64, verbose info values expanded', () => {
  const j = JSON.parse(toJson({ stdout: Buffer.from('hi'), info: { info: '{"pid":7}', plain: 'not json' } })) as Record<string, unknown>;
  assert.deepEqual(j, { stdout: 'aGk=', info: { info: { pid: 7 }, plain: 'not json' } });
});

test('CRI log records: streams, partial lines, empty content, junk, --tail by lines', () => {
  assert.deepEqual(parseRecord(Buffer.from('2026-01-01T00:00:00Z stderr F x y')), { stream: 'stderr', partial: false, content: Buffer.from('x y') });
  assert.deepEqual(parseRecord(Buffer.from('2026-01-01T00:00:00Z stdout F')), { stream: 'stdout', partial: false, content: Buffer.alloc(0) });
  assert.equal(parseRecord(Buffer.from('garbage')), undefined);
  const text = ['t stdout P ab', 't stdout F cd', 't stderr F e', 't stdout F f', 't stdout P g'].join('\n') + '\nt stdout F incompl';
  const { records, carry } = splitRecords(Buffer.from(text));
  assert.equal(records.length, 5);
  assert.equal(carry.toString(), 't stdout F incompl');
  const show = (n: number): string => lastLines(records, n).map((r) => r.content.toString() + (r.partial ? '' : '|')).join('');
  assert.equal(show(1), 'g');
  assert.equal(show(2), 'f|g');
  assert.equal(show(4), 'abcd|e|f|g');
  assert.equal(show(10), 'abcd|e|f|g');
  assert.equal(show(0), '');
});
