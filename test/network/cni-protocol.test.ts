import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import type { Launcher } from '../../common/index.js';
import { NetworkManager, type PodNetworkRequest } from '../../network/index.js';
import { Reaper, ReaperLauncher } from '../../runtime/index.js';
import { CNI_BIN_DIRS, makeNetTestEnv, type NetTestEnv } from '../helpers/network-env.js';
import { writeFakePlugin } from '../helpers/network-fake-plugin.js';
import { eventually } from '../helpers/wait.js';
import { silentLogger } from '../../cri-api/logger.js';

interface Call {
  plugin: string;
  command: string;
  env: Record<string, string>;
  stdin: Record<string, unknown>;
}

const req: PodNetworkRequest = {
  podId: 'proto1',
  name: 'api-0',
  namespace: 'shop',
  uid: '1111-2222',
  portMappings: [
    { protocol: 'tcp', containerPort: 80, hostPort: 8080, hostIp: '' },
    { protocol: 'udp', containerPort: 53, hostPort: 0, hostIp: '' },
  ],
  bandwidth: { ingressRate: 1_000_000 },
  dns: { servers: ['10.96.0.10'], searches: ['svc.local'], options: ['ndots:2'] },
};

// The daemon runs plugins through the runsc reaper; execa is the fallback: both must speak the protocol alike.
for (const via of ['execa', 'the runsc reaper'] as const) describe(`CNI protocol, driven through recording plugins (via ${via})`, () => {
  let env: NetTestEnv;
  let reaper: Reaper | undefined;
  let launcher: Launcher | undefined;
  let binDir: string;
  let log: string;
  const managers: NetworkManager[] = [];
  const open = async (timeoutMs = 20_000): Promise<NetworkManager> => {
    const m = await NetworkManager.open(env.options({ binDirs: [binDir, ...CNI_BIN_DIRS], pluginTimeoutMs: timeoutMs, launcher }));
    managers.push(m);
    return m;
  };
  const calls = async (): Promise<Call[]> =>
    (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Call);
  const writeList = async (cniVersion: string, extra: { first?: object; second?: object; disableCheck?: boolean } = {}): Promise<void> => {
    // Result lists IPv6 first and carries a host-side interface, to check ordering and filtering.
    const result = {
      cniVersion,
      interfaces: [{ name: 'vethhost' }, { name: 'eth0', sandbox: '/placeholder' }],
      ips: [
        { ...(cniVersion < '1.0.0' ? { version: '6' } : {}), address: 'fd00::5/64', interface: 1 },
        { ...(cniVersion < '1.0.0' ? { version: '4' } : {}), address: '10.99.0.1/24', interface: 0 },
        { ...(cniVersion < '1.0.0' ? { version: '4' } : {}), address: '10.99.0.5/24', interface: 1, gateway: '10.99.0.1' },
      ],
    };
    await writeFile(
      join(env.confDir, '50-fake.conflist'),
      JSON.stringify({
        cniVersion,
        name: 'fake-net',
        ...(extra.disableCheck ? { disableCheck: true } : {}),
        plugins: [
          { type: 'fake-a', logFile: log, result, capabilities: { portMappings: true, dns: true }, ...extra.first },
          { type: 'fake-b', logFile: log, capabilities: { bandwidth: true, portMappings: false }, ...extra.second },
        ],
      }),
    );
  };

  before(async () => {
    env = await makeNetTestEnv();
    binDir = join(env.root, 'bin');
    log = join(env.root, 'calls.jsonl');
    await mkdir(binDir);
    await writeFakePlugin(binDir, 'fake-a');
    await writeFakePlugin(binDir, 'fake-b');
    if (via === 'the runsc reaper') {
      reaper = await Reaper.start(silentLogger);
      assert.ok(reaper, 'the reaper runs here');
      launcher = await ReaperLauncher.open(reaper, join(env.root, 'launch'));
    }
  });
  beforeEach(async () => {
    await rm(log, { force: true });
  });
  after(async () => {
    for (const m of managers) m.close();
    reaper?.close();
    await env?.cleanup();
  });

  it('ADD chains prevResult with CNI_* env and capability-filtered runtimeConfig; DEL runs in reverse with the cached result', async () => {
    await writeList('0.4.0');
    const net = await open();
    const r = await net.setup(req);
    assert.deepEqual(r, { netnsPath: join(env.runDir, 'netns', 'proto1'), ips: ['10.99.0.5', 'fd00::5'], interfaceName: 'eth0' });

    const [a, b, ...rest] = await calls();
    assert.equal(rest.length, 0);
    assert.deepEqual([a?.plugin, a?.command, b?.plugin, b?.command], ['fake-a', 'ADD', 'fake-b', 'ADD']);
    assert.deepEqual(a!.env, {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'proto1',
      CNI_NETNS: r.netnsPath,
      CNI_IFNAME: 'eth0',
      CNI_PATH: [binDir, ...CNI_BIN_DIRS].join(':'),
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api-0;K8S_POD_INFRA_CONTAINER_ID=proto1;K8S_POD_UID=1111-2222',
    });
    assert.equal(a!.stdin.name, 'fake-net');
    assert.equal(a!.stdin.cniVersion, '0.4.0');
    assert.equal(a!.stdin.prevResult, undefined);
    assert.deepEqual(a!.stdin.runtimeConfig, {
      portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp', hostIP: '' }],
      dns: { servers: ['10.96.0.10'], searches: ['svc.local'], options: ['ndots:2'] },
    });
    assert.deepEqual(b!.stdin.runtimeConfig, { bandwidth: { ingressRate: 1_000_000, ingressBurst: 2 ** 31 - 1 } });
    assert.deepEqual(b!.stdin.prevResult, a!.stdin.result);

    await rm(log);
    await net.check('proto1');
    const checks = await calls();
    assert.deepEqual(checks.map((c) => `${c.plugin} ${c.command}`), ['fake-a CHECK', 'fake-b CHECK']);
    assert.deepEqual(checks[0]!.stdin.prevResult, a!.stdin.result);

    await rm(log);
    // A new config must not change how an existing pod is torn down.
    await writeFile(join(env.confDir, '50-fake.conflist'), '{}');
    await net.teardown('proto1');
    const dels = await calls();
    assert.deepEqual(dels.map((c) => `${c.plugin} ${c.command}`), ['fake-b DEL', 'fake-a DEL']);
    assert.deepEqual(dels[0]!.stdin.prevResult, a!.stdin.result);
    assert.deepEqual(dels[1]!.stdin.runtimeConfig, a!.stdin.runtimeConfig);
    assert.equal(dels[1]!.env.CNI_ARGS, a!.env.CNI_ARGS);
    assert.equal(net.result('proto1'), undefined);
  });

  it('0.3.1: no prevResult on DEL and no CHECK; disableCheck skips CHECK', async () => {
    await writeList('0.3.1');
    const net = await open();
    assert.deepEqual((await net.setup(req)).ips, ['10.99.0.5', 'fd00::5']);
    await rm(log);
    await net.check('proto1');
    await net.teardown('proto1');
    const dels = await calls();
    assert.deepEqual(dels.map((c) => `${c.plugin} ${c.command}`), ['fake-b DEL', 'fake-a DEL']);
    assert.equal(dels[0]!.stdin.prevResult, undefined);

    await writeList('1.0.0', { disableCheck: true });
    const net2 = await open();
    await net2.setup(req);
    await rm(log);
    await net2.check('proto1');
    assert.deepEqual(await calls(), []);
    await net2.teardown('proto1');
  });

  it('surfaces a plugin error body and undoes the whole chain', async () => {
    await writeList('1.0.0', { second: { fail: { code: 11, msg: 'cannot attach', details: 'device busy' } } });
    const net = await open();
    await assert.rejects(net.setup(req), (err: unknown) => {
      assert.ok(err instanceof CriError);
      assert.equal(err.code, GrpcStatus.INTERNAL);
      assert.match(err.message, /^set up network for pod shop\/api-0 \(proto1\): CNI ADD of network "fake-net" .*: CNI ADD plugin "fake-b" failed: cannot attach \(device busy\) \[CNI error code 11\]$/);
      return true;
    });
    assert.deepEqual((await calls()).map((c) => `${c.plugin} ${c.command}`), ['fake-a ADD', 'fake-b ADD', 'fake-b DEL', 'fake-a DEL']);
    assert.equal(net.result('proto1'), undefined);
    assert.deepEqual(await env.counts(), { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 });
  });

  it('kills a plugin that outlives the timeout', async () => {
    await writeList('1.0.0', { first: { sleepMs: 10_000 } });
    const net = await open(1500);
    const started = Date.now();
    await assert.rejects(net.setup(req), (err: unknown) => {
      assert.ok(err instanceof CriError);
      assert.equal(err.code, GrpcStatus.DEADLINE_EXCEEDED);
      assert.match(err.message, /CNI ADD plugin "fake-a": timed out after 1500 ms/);
      return true;
    });
    assert.ok(Date.now() - started < 8000);
    assert.deepEqual(await env.counts(), { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 });
  });

  it('stops ADD when the caller gives up, with the caller\'s status, and still undoes the chain', async () => {
    await writeList('1.0.0', { first: { sleepMs: 60_000 } });
    const net = await open(120_000);
    const caller = new AbortController();
    const setup = net.setup(req, caller.signal);
    await eventually(async () => (await calls()).some((c) => c.plugin === 'fake-a' && c.command === 'ADD'), 15_000, 'fake-a ADD to start');
    caller.abort(new CriError(GrpcStatus.DEADLINE_EXCEEDED, 'deadline exceeded'));
    await assert.rejects(setup, (err: unknown) => {
      assert.ok(err instanceof CriError);
      assert.equal(err.code, GrpcStatus.DEADLINE_EXCEEDED);
      assert.match(err.message, /^set up network for pod shop\/api-0 \(proto1\): CNI ADD of network "fake-net" .*: CNI ADD plugin "fake-a": stopped: deadline exceeded$/);
      return true;
    });
    // The undo's DEL runs although the caller's signal has aborted.
    assert.deepEqual((await calls()).map((c) => `${c.plugin} ${c.command}`), ['fake-a ADD', 'fake-b DEL', 'fake-a DEL']);
    assert.equal(net.result('proto1'), undefined);
    assert.deepEqual(await env.counts(), { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 });
  });
});
