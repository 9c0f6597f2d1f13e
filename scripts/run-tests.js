#!/usr/bin/env node
// Runs every compiled test file under dist/test (or those under the paths
// given as arguments) with node's own test runner. A test stuck for 10
// minutes fails instead of holding CI until its limit.
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = resolve(new URL('..', import.meta.url).pathname);
const roots = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['dist/test'];
const files = [];
for (const r of roots) {
  const abs = resolve(root, r);
  if (statSync(abs).isFile()) { files.push(abs); continue; }
  for (const f of readdirSync(abs, { recursive: true })) {
    if (String(f).endsWith('.test.js')) files.push(join(abs, String(f)));
  }
}
files.sort();
if (files.length === 0) {
  console.error('run-tests: no test files found; did `npm run build` run?');
  process.exit(1);
}
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=600000', '--test-reporter=spec', ...files], { stdio: 'inherit', cwd: root });
process.exit(result.status ?? 1);
