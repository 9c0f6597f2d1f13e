#!/usr/bin/env node
// Records which commit dist/ is built from, for `gvisor-cri --version` and
// the release names: dist/build-info.json {"commit": "..."}. Run by
// `npm run build` after tsc. A tree without git (a source tarball) says "unknown".
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
let commit = 'unknown';
try {
  commit = execFileSync('git', ['describe', '--always', '--dirty', '--abbrev=12', '--exclude=*'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch {
  // No git, or not a checkout: the commit is not known.
}
writeFileSync(resolve(root, 'dist/build-info.json'), JSON.stringify({ commit }) + '\n');
