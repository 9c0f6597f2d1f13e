// What the daemon says it is: version, build commit, node, runsc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/daemon.js';
import { COMMIT, criRuntimeVersion, VERSION, versionInfo } from '../../daemon/version.js';

test('versionInfo: package version, the commit npm run build recorded, this node, runsc --version', async () => {
  const { commit } = JSON.parse(await readFile(join(REPO_ROOT, 'dist/build-info.json'), 'utf8')) as { commit: string };
  // unknown: built where git could not say (no git, or not a checkout).
  assert.match(commit, /^([0-9a-f]{12}(-dirty)?|unknown)$/);
  assert.equal(COMMIT, commit);
  const v = await versionInfo('/usr/bin/runsc');
  assert.deepEqual({ ...v, runscVersion: '' }, { version: VERSION, commit, node: process.version, runscVersion: '' });
  assert.match(v.runscVersion, /^\S+$/, 'the version alone, without "runsc version"');
  assert.equal(criRuntimeVersion(v), `${VERSION}+${commit} (runsc ${v.runscVersion})`);
});

test('versionInfo: a missing runsc is named, not thrown', async () => {
  const v = await versionInfo('/nonexistent/runsc');
  assert.match(v.runscVersion, /^unavailable \(\/nonexistent\/runsc: /);
});
