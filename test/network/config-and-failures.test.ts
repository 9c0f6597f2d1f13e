import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import { NetworkManager, type PodNetworkRequest } from '../../network/index.js';
import { makeNetTestEnv, type LeakCounts, type NetTestEnv } from '../helpers/network-env.js';
import { eventually } from '../helpers/wait.js';

const pod = (podId: string): PodNetworkRequest => ({ podId, name: `app-${podId}`, namespace: 'team', uid: `uid-${podId}`, portMappings: [] });
const NONE: LeakCounts = { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 };

/** Waits for the config watcher to have noticed a change. */
const waitFor = (what: string, cond: () => boolean): Promise<true> => eventually(async () => cond(), 5000, what);

const criError = (code: number, re: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof CriError, String(err));
  assert.equal(err.code, code, err.message);
  assert.match(err.message, re);
  return true;
};

describe('CNI config handling and failed setups', () => {
  let env: NetTestEnv;
  const managers: NetworkManager[] = [];
  const open = async (extra = {}): Promise<NetworkManager> => {
    const m = await NetworkManager.open(env.options(extra));
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

  it('is not ready without config, and picks up a config written while running', async () => {
    const net = await open();
    const s = net.status();
    assert.equal(s.ready, false);
    assert.equal(s.reason, 'NetworkPluginNotReady');
    assert.match(s.message, new RegExp(`no network config found in ${env.confDir}`));
    await assert.rejects(net.setup(pod('nocfg')), criError(GrpcStatus.FAILED_PRECONDITION, /pod team\/app-nocfg \(nocfg\).*network not ready/));

    await env.writeConflist();
    await waitFor('status ready', () => net.status().ready);
    const r = await net.setup(pod('late'));
    assert.ok(r.ips[0]?.startsWith(`${env.prefix}.`));
    await net.teardown('late');
    assert.deepEqual(await env.counts(), NONE);
  });

  it('reports broken JSON naming the file, and setup fails clearly', async () => {
    await rm(env.confDir, { recursive: true, force: true });
    await mkdir(env.confDir);
    const net = await open();
    await writeFile(join(env.confDir, '05-broken.conflist'), '{"cniVersion": "1.0.0", "name": ');
    await env.writeConflist({ file: '10-good.conflist' });
    await waitFor('broken config noticed', () => /05-broken\.conflist/.test(net.status().message));
    assert.equal(net.status().ready, false);
    assert.match(net.status().message, /invalid JSON/);
    await assert.rejects(net.setup(pod('broken')), criError(GrpcStatus.FAILED_PRECONDITION, /network not ready: CNI config .*05-broken\.conflist: invalid JSON/));
    assert.deepEqual(await env.counts(), NONE);

    await writeFile(join(env.confDir, '05-broken.conflist'), JSON.stringify({ cniVersion: '0.2.0', name: 'x', plugins: [{ type: 'bridge' }] }));
    await waitFor('old version noticed', () => /cniVersion "0.2.0" is not supported/.test(net.status().message));
    await rm(join(env.confDir, '05-broken.conflist'));
    await waitFor('good config used', () => net.status().ready);
  });

  it('names a missing plugin binary in status and in the setup error', async () => {
    const net = await open();
    await env.writeConflist({ file: '01-missing.conflist', extraPlugins: [{ type: 'no-such-plugin' }] });
    await waitFor('missing plugin noticed', () => /no-such-plugin/.test(net.status().message));
    assert.equal(net.status().ready, false);
    assert.match(net.status().message, /CNI plugin "no-such-plugin" not found in \/opt\/cni\/bin, \/usr\/lib\/cni/);
    await assert.rejects(net.setup(pod('missing')), criError(GrpcStatus.FAILED_PRECONDITION, /app-missing.*"no-such-plugin" not found/));
    assert.deepEqual(await env.counts(), NONE);
    await rm(join(env.confDir, '01-missing.conflist'));
    await waitFor('good config used', () => net.status().ready);
  });

  it('rolls back everything when a plugin late in the chain fails, surfacing its error', async () => {
    const net = await open();
    await env.writeConflist({ file: '01-tuning.conflist', extraPlugins: [{ type: 'tuning', sysctl: { 'net.no.such.sysctl': '1' } }] });
    // Read the dir now rather than wait for the watcher: the earlier config is ready too, so readiness cannot tell them apart.
    await net.reload();
    assert.equal(net.status().ready, true);
    await assert.rejects(net.setup(pod('tuned')), criError(GrpcStatus.INTERNAL, /app-tuned.*CNI ADD of network.*01-tuning\.conflist.*plugin "tuning" failed: .*no\/such\/sysctl/));
    assert.deepEqual(await env.counts(), NONE);
    assert.equal(net.result('tuned'), undefined);
    await rm(join(env.confDir, '01-tuning.conflist'));
  });

  it('fails clearly when IPAM is exhausted, leaving nothing of the failed pod', async () => {
    const tiny = `10.${200 + 2}.${process.pid % 250}.0/30`;
    await rm(env.confDir, { recursive: true, force: true });
    await mkdir(env.confDir);
    await env.deleteBridge();
    await env.writeConflist({ subnet: tiny });
    const net = await open();
    const first = await net.setup(pod('only'));
    const before = await env.counts();
    assert.deepEqual(before, { netnsMounts: 1, netnsFiles: 1, veths: 1, ipamAllocations: 1, iptablesRules: before.iptablesRules });
    await assert.rejects(net.setup(pod('nomore')), criError(GrpcStatus.INTERNAL, /app-nomore.*CNI ADD.*no IP addresses available/));
    assert.deepEqual(await env.counts(), before);
    assert.deepEqual(await readdir(join(env.runDir, 'netns')), ['only']);
    assert.ok(first.ips.length === 1);
    await net.teardown('only');
    assert.deepEqual(await env.counts(), NONE);
  });

  it('uses the built-in bridge network only when confDir is empty', async () => {
    await rm(env.confDir, { recursive: true, force: true });
    await env.deleteBridge();
    const def = { bridge: env.bridge, subnet: `10.${200 + 2}.${process.pid % 250}.64/26` };
    const net = await open({ defaultNetwork: def });
    assert.deepEqual(net.status(), { ready: true, reason: '', message: '' });
    const id = `def${process.pid}`;
    const r = await net.setup(pod(id));
    try {
      assert.ok(r.ips[0]?.startsWith(`10.${200 + 2}.${process.pid % 250}.`), r.ips[0]);
      const allocated = await readdir(join(env.stateDir, 'cni', 'ipam', 'gvisor-cri-default'));
      assert.ok(allocated.includes(r.ips[0]!), allocated.join(','));
    } finally {
      await net.teardown(id);
    }
    assert.deepEqual(await env.counts(), NONE);
    await writeFile(join(env.confDir, '00-broken.conf'), 'not json');
    await waitFor('broken file wins over the default', () => !net.status().ready);
  });

  it('rejects requests that would corrupt CNI_ARGS or file names', async () => {
    const net = await open();
    await assert.rejects(net.setup(pod('../x')), criError(GrpcStatus.INVALID_ARGUMENT, /pod id/));
    await assert.rejects(net.setup({ ...pod('ok1'), name: 'a;b' }), criError(GrpcStatus.INVALID_ARGUMENT, /name "a;b"/));
    await assert.rejects(net.teardown('../x'), criError(GrpcStatus.INVALID_ARGUMENT, /pod id/));
  });
});
