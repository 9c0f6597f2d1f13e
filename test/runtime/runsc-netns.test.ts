import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { probeRunscFeatures } from '../../runtime/runsc/features.js';
import { silentLogger } from '../../cri-api/logger.js';
import { Runsc } from '../../runtime/runsc/runsc.js';
import { makeRuntimeEnv, sandboxProcesses, sandboxSpec, type RuntimeEnv } from '../helpers/runtime-env.js';

const NETNS = `gvrt${process.pid}`;
let env: RuntimeEnv;
const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: 'ignore' });
};

before(async () => {
  env = await makeRuntimeEnv('netns');
  try {
    ip('netns', 'del', NETNS);
  } catch {
    // No leftover.
  }
  ip('netns', 'add', NETNS);
  ip('-n', NETNS, 'link', 'set', 'lo', 'up');
});
after(async () => {
  await env?.cleanup();
  try {
    ip('netns', 'del', NETNS);
  } catch {
    // Already gone.
  }
});

test('feature probe: version, port-forward, overlay2, netns workaround, capabilities (cached)', async () => {
  const runsc = new Runsc({ ...env.runsc.options, network: undefined });
  let t0 = Date.now();
  const f = await probeRunscFeatures({ runsc, workDir: join(env.dir, 'run'), infra: env.infra, logger: silentLogger });
  const firstMs = Date.now() - t0;
  t0 = Date.now();
  const again = await probeRunscFeatures({ runsc, workDir: join(env.dir, 'run'), infra: env.infra, logger: silentLogger });
  console.log(`# probe: ${firstMs} ms, cached: ${Date.now() - t0} ms; ${JSON.stringify({ ...f, capabilities: f.capabilities.length })}`);
  assert.deepEqual(again, f);
  assert.match(f.version, /runsc version/);
  assert.equal(f.overlay2, true);
  assert.equal(f.portForward, true);
  assert.ok(f.capabilities.includes('CAP_SYS_ADMIN'));
  assert.deepEqual(await env.runsc.list(), []);
});

test('a sandbox in its own netns starts (with the workaround when this runsc needs it)', async () => {
  const runsc = new Runsc({ ...env.runsc.options, network: undefined });
  const f = await probeRunscFeatures({ runsc, workDir: join(env.dir, 'run'), infra: env.infra, logger: silentLogger });
  const id = `netsb-${process.pid}`;
  const netnsPath = `/run/netns/${NETNS}`;
  const t0 = Date.now();
  const pid = await env.driver.createSandbox({ id, bundleDir: join(env.dir, 'bundles', id), spec: sandboxSpec(env, id, netnsPath), networkMode: 'sandbox', netnsPath, needsNetnsWorkaround: f.netnsWorkaround });
  console.log(`# sandbox in netns create+start (workaround ${f.netnsWorkaround}): ${Date.now() - t0} ms`);
  assert.ok(pid > 0);
  assert.equal((await env.runsc.state(id)).status, 'running');
  assert.equal(sandboxProcesses(env.runsc.options.root), 1);
  await env.driver.stopSandbox(id, []);
  assert.deepEqual(await env.runsc.list(), []);
});
