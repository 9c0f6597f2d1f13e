import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CriLogWriter } from '../../runtime/logs/cri-log.js';
import { OutputFifo } from '../../runtime/logs/log-pipe.js';
import { buildExecProcess } from '../../runtime/spec/oci-spec.js';
import { containerSpec, makeRuntimeEnv, sandboxSpec, type RuntimeEnv } from '../helpers/runtime-env.js';
import { eventually, withDeadline } from '../helpers/wait.js';

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
  await env.driver.prepareContainer({ id, sandboxId: SB, bundleDir: join(env.dir, 'bundles', id), spec: containerSpec(env, SB, ['sh', '-c', script]) });
  await env.driver.startContainer({ id, bundleDir: join(env.dir, 'bundles', id), io: { kind: 'fifo', stdout: out, stderr: err } });
  assert.equal(await env.driver.waitContainer(id, SB), 0);
  // The sandbox drops its ends when the container is deleted: the readers then see EOF.
  await env.driver.removeContainer(id);
  await withDeadline(pumps, 30_000, 'the output to reach EOF');
  await out.close();
  await err.close();
  await writer.close();
  const lines = parse(await readFile(logPath, 'utf8'));
  const stdout = lines.filter((l) => l.stream === 'stdout');
  assert.deepEqual(stdout.map((l) => [l.tag, l.content.length]), [['P', 16384], ['P', 16384], ['F', 40000 - 32768], ['P', 4]]);
  assert.equal(stdout[3]!.content, 'tail');
  assert.deepEqual(lines.filter((l) => l.stream === 'stderr').map((l) => [l.tag, l.content]), [['F', 'oops']]);
});

test('output survives the reader closing while lines are written: all lines arrive after reopen, container still running', async () => {
  const id = 'c-tick';
  const logPath = join(env.dir, `${id}.log`);
  const writer = new CriLogWriter(logPath);
  await writer.open();
  const out = await OutputFifo.create(join(env.dir, `${id}.out`));
  const err = await OutputFifo.create(join(env.dir, `${id}.err`));
  writer.pump(out.reader, 'stdout');
  // Each line is also counted in a file, so the test can see the writing go on while nobody reads.
  const script = 'i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); echo $i > /tmp/written; sleep 0.1; done; sleep 1000';
  await env.driver.prepareContainer({ id, sandboxId: SB, bundleDir: join(env.dir, 'bundles', id), spec: containerSpec(env, SB, ['sh', '-c', script]) });
  await env.driver.startContainer({ id, bundleDir: join(env.dir, 'bundles', id), io: { kind: 'fifo', stdout: out, stderr: err } });
  const lines = async (): Promise<string[]> => parse(await readFile(logPath, 'utf8')).map((l) => l.content);
  const written = async (): Promise<number> => Number((await env.driver.execSync(id, buildExecProcess({ args: ['cat', '/tmp/written'], env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false, capabilities: [] }), 5000)).stdout.toString());
  await eventually(async () => (await lines()).length >= 3, 10_000, 'the first lines in the log');
  // The daemon "goes away": its reader closes; the container writes on with nobody reading.
  await out.close();
  const closedAt = await written();
  await eventually(async () => (await written()) >= Math.min(closedAt + 15, 40), 20_000, 'lines written while nobody reads');
  const again = await OutputFifo.reattach(join(env.dir, `${id}.out`));
  writer.pump(again.reader, 'stdout');
  // All 40 lines: the last ones may be written only now, so wait for them rather than for a time.
  await eventually(async () => (await lines()).length >= 40, 20_000, 'all 40 lines in the log');
  assert.equal((await env.driver.state(id)).status, 'running');
  await again.close();
  await err.close();
  await writer.close();
  assert.deepEqual(await lines(), Array.from({ length: 40 }, (_, i) => `line${i}`));
  await env.driver.stopContainer(id, 0);
  await env.driver.removeContainer(id);
});
