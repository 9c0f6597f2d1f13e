import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CriLogWriter } from '../../runtime/cri-log.js';
import { OutputFifo } from '../../runtime/log-pipe.js';
import { containerSpec, makeRuntimeEnv, sandboxSpec, type RuntimeEnv } from '../helpers/runtime-env.js';

let env: RuntimeEnv;
const SB = `logsb-${process.pid}`;

before(async () => {
  env = await makeRuntimeEnv('logs');
  await env.driver.createSandbox({ id: SB, bundleDir: join(env.dir, 'bundles', SB), spec: sandboxSpec(env, SB), networkMode: 'none', needsNetnsWorkaround: false });
});
after(async () => {
  await env?.cleanup();
});

function parse(text: string): { stream: string; tag: string; content: string }[] {
  return text.split('\n').filter((l) => l !== '').map((l) => {
    const m = /^(\S+) (stdout|stderr) ([PF]) (.*)$/s.exec(l);
    assert.ok(m, `malformed CRI log line: ${l.slice(0, 80)}`);
    assert.ok(!Number.isNaN(Date.parse(m[1]!)), `bad timestamp ${m[1]}`);
    return { stream: m[2]!, tag: m[3]!, content: m[4]! };
  });
}

test('a >16 KiB line is split into P chunks and a final F; an unterminated last line is P', async () => {
  const id = 'c-long';
  const logPath = join(env.dir, `${id}.log`);
  const writer = new CriLogWriter(logPath);
  await writer.open();
  const out = await OutputFifo.create(join(env.dir, `${id}.out`));
  const err = await OutputFifo.create(join(env.dir, `${id}.err`));
  const pumps = Promise.all([writer.pump(out.reader, 'stdout'), writer.pump(err.reader, 'stderr')]);
  // 40000 'x' then newline, then "tail" with no newline; one line on stderr.
  const script = 'head -c 40000 /dev/zero | tr "\\0" x; echo; echo oops >&2; printf tail';
  await env.driver.createContainer({ id, sandboxId: SB, bundleDir: join(env.dir, 'bundles', id), spec: containerSpec(env, SB, ['sh', '-c', script]), io: { kind: 'fifo', stdout: out, stderr: err } });
  await env.driver.startContainer(id);
  assert.equal(await env.driver.waitContainer(id), 0);
  // The sandbox drops its ends when the container is deleted: the readers then see EOF.
  await env.driver.removeContainer(id);
  await Promise.race([pumps, new Promise((r) => setTimeout(r, 3000))]);
  await out.close();
  await err.close();
  await writer.close();
  const lines = parse(await readFile(logPath, 'utf8'));
  const stdout = lines.filter((l) => l.stream === 'stdout');
  assert.deepEqual(stdout.map((l) => [l.tag, l.content.length]), [['P', 16384], ['P', 16384], ['F', 40000 - 32768], ['P', 4]]);
  assert.equal(stdout[3]!.content, 'tail');
  assert.deepEqual(lines.filter((l) => l.stream === 'stderr').map((l) => [l.tag, l.content]), [['F', 'oops']]);
});

test('output survives the reader closing for 2 s: all lines arrive after reopen, container still running', async () => {
  const id = 'c-tick';
  const logPath = join(env.dir, `${id}.log`);
  const writer = new CriLogWriter(logPath);
  await writer.open();
  const out = await OutputFifo.create(join(env.dir, `${id}.out`));
  const err = await OutputFifo.create(join(env.dir, `${id}.err`));
  writer.pump(out.reader, 'stdout');
  const script = 'i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); sleep 0.1; done; sleep 1000';
  await env.driver.createContainer({ id, sandboxId: SB, bundleDir: join(env.dir, 'bundles', id), spec: containerSpec(env, SB, ['sh', '-c', script]), io: { kind: 'fifo', stdout: out, stderr: err } });
  await env.driver.startContainer(id);
  await new Promise((r) => setTimeout(r, 500));
  // The daemon "goes away": its reader closes, nobody reads for 2 s.
  await out.close();
  await new Promise((r) => setTimeout(r, 2000));
  const again = await OutputFifo.reattach(join(env.dir, `${id}.out`));
  writer.pump(again.reader, 'stdout');
  // Wait for the 40th line rather than a fixed time: on a loaded machine the
  // container's loop of 0.1 s sleeps runs late.
  const want = Array.from({ length: 40 }, (_, i) => `line${i}`);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && !(await readFile(logPath, 'utf8')).includes(' stdout F line39\n')) await new Promise((r) => setTimeout(r, 100));
  assert.equal((await env.driver.state(id)).status, 'running');
  await again.close();
  await err.close();
  await writer.close();
  const got = parse(await readFile(logPath, 'utf8')).map((l) => l.content);
  assert.deepEqual(got, want);
  await env.driver.stopContainer(id, 0);
  await env.driver.removeContainer(id);
});
