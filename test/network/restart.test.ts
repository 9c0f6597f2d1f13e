import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execa } from 'execa';
import { NetworkManager, type PodNetworkRequest } from '../../network/index.js';
import { freePort, makeNetTestEnv, type LeakCounts, type NetTestEnv } from '../helpers/network-env.js';

const pod = (podId: string, hostPort?: number): PodNetworkRequest => ({
  podId,
  name: `db-${podId}`,
  namespace: 'ops',
  uid: `uid-${podId}`,
  portMappings: hostPort ? [{ protocol: 'tcp', containerPort: 5432, hostPort, hostIp: '127.0.0.1' }] : [],
});
const NONE: LeakCounts = { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 };

describe('pod networks across a daemon restart', () => {
  let env: NetTestEnv;
  const managers: NetworkManager[] = [];
  const open = async (): Promise<NetworkManager> => {
    const m = await NetworkManager.open(env.options());
    managers.push(m);
    return m;
  };

  before(async () => {
    env = await makeNetTestEnv();
  });
  after(async () => {
    for (const m of managers) m.close();
    await env?.cleanup();
  });

  it('tears down after a restart and a config change, and recovers pods the runtime forgot', async () => {
    await env.writeConflist();
    const first = await open();
    const a = await first.setup(pod('ra', await freePort()));
    const b = await first.setup(pod('rb'));
    first.close();

    // The node's config breaks meanwhile: teardown must rely on what was cached.
    await writeFile(join(env.confDir, '10-test.conflist'), '{ broken');
    const stray = join(env.runDir, 'netns', 'stray');
    await writeFile(stray, '');
    await execa('unshare', [`--net=${stray}`, 'true']);

    const second = await open();
    assert.equal(second.status().ready, false);
    assert.deepEqual(second.result('ra'), a);
    assert.deepEqual(second.result('rb'), b);
    await second.teardown('ra');
    assert.equal(second.result('ra'), undefined);
    const mid = await env.counts();
    assert.equal(mid.veths, 1);
    assert.equal(mid.ipamAllocations, 1);

    await second.recover(new Set(['rb']));
    assert.ok(second.result('rb'));
    await second.recover(new Set());
    assert.equal(second.result('rb'), undefined);
    assert.deepEqual(await env.counts(), NONE);
  });

  for (const cniVersion of ['0.3.1', '0.4.0', '1.0.0']) {
    it(`sets up, checks and tears down with cniVersion ${cniVersion}`, async () => {
      await env.writeConflist({ cniVersion });
      const net = await open();
      const id = `v${cniVersion.replaceAll('.', '')}`;
      const r = await net.setup(pod(id));
      assert.equal(r.ips.length, 1);
      assert.ok(r.ips[0]!.startsWith(`${env.prefix}.`));
      await net.check(id);
      net.close();
      const again = await open();
      await again.teardown(id);
      assert.deepEqual(await env.counts(), NONE);
    });
  }
});
