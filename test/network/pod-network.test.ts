import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NetworkManager, writePodFiles, type PodNetworkRequest } from '../../network/index.js';
import { freePort, inNetns, makeNetTestEnv, tcpExchange, type NetTestEnv } from '../helpers/network-env.js';

const pod = (podId: string, extra: Partial<PodNetworkRequest> = {}): PodNetworkRequest => ({
  podId,
  name: `web-${podId}`,
  namespace: 'default',
  uid: `uid-${podId}`,
  portMappings: [],
  ...extra,
});

describe('pod network with real CNI plugins', () => {
  let env: NetTestEnv;
  let net: NetworkManager;

  before(async () => {
    env = await makeNetTestEnv();
    await env.writeConflist();
    net = await NetworkManager.open(env.options());
  });
  after(async () => {
    net?.close();
    await env?.cleanup();
  });

  it('is ready with the config file in confDir', () => {
    assert.deepEqual(net.status(), { ready: true, reason: '', message: '' });
  });

  it('gives two pods distinct IPs on one bridge that reach each other, the gateway and a hostPort', async () => {
    const hostPort = await freePort();
    const a = await net.setup(pod('pa1', { portMappings: [{ protocol: 'tcp', containerPort: 8080, hostPort, hostIp: '127.0.0.1' }] }));
    const b = await net.setup(pod('pb1'));
    try {
      assert.equal(a.interfaceName, 'eth0');
      assert.equal(a.netnsPath, join(env.runDir, 'netns', 'pa1'));
      assert.equal(a.ips.length, 1);
      assert.equal(b.ips.length, 1);
      assert.notEqual(a.ips[0], b.ips[0]);
      for (const ip of [...a.ips, ...b.ips]) assert.ok(ip.startsWith(`${env.prefix}.`), ip);
      assert.deepEqual(net.result('pa1'), a);

      const addr = await inNetns(a.netnsPath, ['ip', '-o', '-4', 'addr', 'show', 'eth0']);
      assert.match(addr.stdout, new RegExp(`inet ${a.ips[0]!.replaceAll('.', '\\.')}/24`));
      const lo = await inNetns(a.netnsPath, ['ip', '-o', 'link', 'show', 'lo']);
      assert.match(lo.stdout, /UP/);

      const ab = await tcpExchange({ listenNs: b.netnsPath, port: 7001, dialNs: a.netnsPath, dialAddr: b.ips[0]! });
      assert.deepEqual(ab, { server: 'ping', client: 'pong' });

      const gwPort = await freePort();
      const gw = await tcpExchange({ port: gwPort, dialNs: b.netnsPath, dialAddr: env.gateway });
      assert.deepEqual(gw, { server: 'ping', client: 'pong' });

      const hp = await tcpExchange({ listenNs: a.netnsPath, port: 8080, dialAddr: '127.0.0.1', dialPort: hostPort });
      assert.deepEqual(hp, { server: 'ping', client: 'pong' });

      // portmap 1.1.1 fails CHECK of IPv4-only port mappings (containernetworking/plugins#819): check the pod without any.
      await net.check('pb1');
    } finally {
      await net.teardown('pa1');
      await net.teardown('pb1');
    }
    assert.deepEqual(await env.counts(), { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 });
    assert.equal(net.result('pa1'), undefined);
  });

  it('tears down twice, and after the netns was deleted by hand', async () => {
    await net.setup(pod('pc1', { portMappings: [{ protocol: 'tcp', containerPort: 80, hostPort: await freePort(), hostIp: '' }] }));
    await net.teardown('pc1');
    await net.teardown('pc1');
    const q = await net.setup(pod('pd1', { portMappings: [{ protocol: 'tcp', containerPort: 80, hostPort: await freePort(), hostIp: '' }] }));
    const { execa } = await import('execa');
    await execa('umount', [q.netnsPath]);
    await execa('rm', [q.netnsPath]);
    await net.teardown('pd1');
    assert.deepEqual(await env.counts(), { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 });
  });

  it('tears down cleanly after gVisor took the addresses out of the netns', async () => {
    const r = await net.setup(pod('pe1', { portMappings: [{ protocol: 'tcp', containerPort: 80, hostPort: await freePort(), hostIp: '' }] }));
    // What runsc --network=sandbox does to the pod netns when the sandbox starts.
    await inNetns(r.netnsPath, ['ip', 'addr', 'flush', 'dev', 'eth0']);
    await net.teardown('pe1');
    assert.deepEqual(await env.counts(), { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 });
  });

  it('sets up pods in parallel with distinct addresses', async () => {
    const ids = ['pp1', 'pp2', 'pp3', 'pp4'];
    const results = await Promise.all(ids.map((id) => net.setup(pod(id))));
    try {
      assert.equal(new Set(results.map((r) => r.ips[0])).size, ids.length);
    } finally {
      await Promise.all(ids.map((id) => net.teardown(id)));
    }
    assert.deepEqual(await env.counts(), { netnsMounts: 0, netnsFiles: 0, veths: 0, ipamAllocations: 0, iptablesRules: 0 });
  });

  it('passes DNS to resolv.conf and writes hosts and hostname', async () => {
    const dir = join(env.root, 'podfiles');
    const files = await writePodFiles(dir, {
      hostname: 'web-0',
      dns: { servers: ['10.96.0.10', 'fd00::a'], searches: ['default.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5', 'timeout:2'] },
      ips: [`${env.prefix}.9`, 'fd00::9'],
    });
    assert.equal(
      await readFile(files.resolvConf, 'utf8'),
      'search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5 timeout:2\n',
    );
    const hosts = await readFile(files.hosts, 'utf8');
    assert.match(hosts, /^127\.0\.0\.1\tlocalhost$/m);
    assert.match(hosts, /^::1\tlocalhost/m);
    assert.match(hosts, new RegExp(`^${env.prefix.replaceAll('.', '\\.')}\\.9\\tweb-0$`, 'm'));
    assert.match(hosts, /^fd00::9\tweb-0$/m);
    assert.equal(await readFile(files.hostname, 'utf8'), 'web-0\n');

    const plain = await writePodFiles(join(env.root, 'podfiles2'), { hostname: 'web-1', ips: [] });
    assert.equal(await readFile(plain.resolvConf, 'utf8'), await readFile('/etc/resolv.conf', 'utf8').catch(() => ''));
    await assert.rejects(writePodFiles(dir, { hostname: 'bad\nname', ips: [] }), /not a valid DNS name/);
    await assert.rejects(writePodFiles(dir, { hostname: 'ok', dns: { servers: ['x; rm'], searches: [], options: [] }, ips: [] }), /not an IP address/);
  });
});
