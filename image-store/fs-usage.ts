/** Disk usage of a directory tree as ImageFsInfo reports it. */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** Bytes (allocated blocks) and inodes under `dir`; hard-linked files (snapshots share them) count once. */
export async function diskUsage(dir: string): Promise<{ usedBytes: number; inodesUsed: number }> {
  const seen = new Set<string>();
  let usedBytes = 0;
  const walk = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path);
    } catch {
      return; // removed while walking
    }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    usedBytes += st.blocks * 512;
    if (!st.isDirectory()) return;
    let names: string[] = [];
    try {
      names = await readdir(path);
    } catch {
      return;
    }
    for (const n of names) await walk(join(path, n));
  };
  await walk(dir);
  return { usedBytes, inodesUsed: seen.size };
}
