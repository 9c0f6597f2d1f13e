// chattr +T on the directory snapshots are built in (image-store/top-dir.ts).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { markTopDir } from '../../image-store/top-dir.js';

/** The inode flags lsattr prints for a directory (T: top of a hierarchy). */
function flags(dir: string): string {
  return execFileSync('lsattr', ['-d', dir], { encoding: 'utf8' }).split(' ')[0]!;
}

test('a directory on ext4 is marked the top of a hierarchy; tmpfs, which has no such flag, gives the reason instead of failing', async () => {
  const onDisk = await mkdtemp(join(tmpdir(), 'top-dir-'));
  const onTmpfs = join('/dev/shm', `top-dir-${process.pid}`);
  await mkdir(onTmpfs);
  try {
    assert.equal(execFileSync('stat', ['-f', '-c', '%T', onDisk], { encoding: 'utf8' }).trim(), 'ext2/ext3', 'the test machine keeps /tmp on ext4 (docs: test-env)');
    assert.doesNotMatch(flags(onDisk), /T/);
    assert.equal(await markTopDir(onDisk), undefined);
    assert.match(flags(onDisk), /T/);
    assert.match((await markTopDir(onTmpfs)) ?? '', /chattr \+T .*top-dir-\d+: .*Operation not supported/);
    assert.match((await markTopDir(join(onDisk, 'absent'))) ?? '', /No such file or directory/);
  } finally {
    await rm(onDisk, { recursive: true, force: true });
    await rm(onTmpfs, { recursive: true, force: true });
  }
});
