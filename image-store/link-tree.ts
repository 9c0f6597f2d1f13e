import { chmodSync, copyFileSync, lchownSync, linkSync, lstatSync, mkdirSync, readdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { chownUnlessRootless } from './layer-apply.js';

/**
 * `cp -al`: the same tree with fresh directories and hard-linked everything
 * else, the start of a snapshot built on `src`. Synchronous, for the unpack
 * workers (a base of many files costs a call per file; see layer-apply.ts).
 */
export function linkTree(src: string, dst: string): void {
  const st = lstatSync(src);
  mkdirSync(dst, { mode: 0o700 });
  for (const entry of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, entry.name);
    const to = join(dst, entry.name);
    if (entry.isDirectory()) {
      linkTree(from, to);
      continue;
    }
    try {
      linkSync(from, to);
    } catch (err) {
      // An inode at the file system's link limit gets its own copy.
      if ((err as NodeJS.ErrnoException).code !== 'EMLINK' || !entry.isFile()) throw err;
      const fst = lstatSync(from);
      copyFileSync(from, to);
      chownUnlessRootless(() => lchownSync(to, fst.uid, fst.gid));
      chmodSync(to, fst.mode & 0o7777);
      utimesSync(to, fst.atime, fst.mtime);
    }
  }
  chownUnlessRootless(() => lchownSync(dst, st.uid, st.gid));
  chmodSync(dst, st.mode & 0o7777);
  utimesSync(dst, st.atime, st.mtime);
}
