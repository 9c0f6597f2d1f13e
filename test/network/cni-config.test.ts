import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig, parseConfig, requiredPlugins } from '../../network/cni-config.js';
import { podIps } from '../../network/cni-result.js';

describe('CNI config files', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('wraps a single-plugin .conf into a list and keeps a .conf that is really a list', () => {
    const one = parseConfig(JSON.stringify({ cniVersion: '0.3.1', name: 'n', type: 'bridge', bridge: 'b0', ipam: { type: 'host-local' } }), '10.conf');
    assert.deepEqual(one, { cniVersion: '0.3.1', name: 'n', plugins: [{ cniVersion: '0.3.1', name: 'n', type: 'bridge', bridge: 'b0', ipam: { type: 'host-local' } }] });
    assert.deepEqual(requiredPlugins(one), ['bridge', 'host-local']);
    const list = parseConfig(JSON.stringify({ cniVersion: '1.1.0', name: 'n', plugins: [{ type: 'ptp' }] }), '10.conf');
    assert.equal(list.plugins.length, 1);
  });

  it('says what is wrong', () => {
    assert.throws(() => parseConfig('{', 'a.conflist'), /invalid JSON/);
    assert.throws(() => parseConfig('{"cniVersion":"1.0.0","name":"n","plugins":[]}', 'a.conflist'), /"plugins" must be a non-empty list/);
    assert.throws(() => parseConfig('{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}', 'a.conflist'), /plugins\[0\]: "type"/);
    assert.throws(() => parseConfig('{"cniVersion":"0.1.0","name":"n","type":"bridge"}', 'a.conf'), /cniVersion "0.1.0" is not supported/);
    assert.throws(() => parseConfig('{"cniVersion":"1.0.0","type":"bridge"}', 'a.conf'), /"name"/);
  });

  it('uses the lexicographically first .conflist/.conf/.json and ignores other files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gvcri-netconf-'));
    dirs.push(dir);
    await writeFile(join(dir, '00-readme.txt'), 'not a config');
    await writeFile(join(dir, '20-b.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'b', plugins: [{ type: 'bridge' }] }));
    await writeFile(join(dir, '15-a.json'), JSON.stringify({ cniVersion: '1.0.0', name: 'a', type: 'ptp' }));
    const s = await loadConfig(dir, undefined);
    assert.ok(s.ok);
    assert.equal(s.list.name, 'a');
    assert.equal(s.source, join(dir, '15-a.json'));
    assert.deepEqual(await loadConfig(join(dir, 'missing'), undefined), { ok: false, message: `no network config found in ${join(dir, 'missing')}` });
  });

  it('reads pod IPs from results of every version, IPv4 first, pod side only', () => {
    const v03 = { cniVersion: '0.3.1', interfaces: [{ name: 'cni0' }, { name: 'eth0', sandbox: '/ns' }], ips: [{ version: '6', address: 'fd00::2/64', interface: 1 }, { version: '4', address: '10.0.0.1/24', interface: 0 }, { version: '4', address: '10.0.0.2/24', interface: 1 }] };
    assert.deepEqual(podIps(v03, 'eth0'), ['10.0.0.2', 'fd00::2']);
    const v1 = { cniVersion: '1.0.0', ips: [{ address: '192.168.1.7/24' }] };
    assert.deepEqual(podIps(v1, 'eth0'), ['192.168.1.7']);
    assert.deepEqual(podIps({ cniVersion: '1.0.0', interfaces: [{ name: 'net1', sandbox: '/ns' }], ips: [{ address: '10.1.1.1/24', interface: 0 }] }, 'eth0'), []);
    assert.deepEqual(podIps(null, 'eth0'), []);
  });
});
