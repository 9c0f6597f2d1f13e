import { connect } from 'node:net';
import { lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Whether a live process accepts connections on the unix socket at `path`. */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Makes the socket's directory and clears the way for binding: a socket left
 * by a dead daemon is removed, one a live daemon answers on is refused.
 */
export async function claimSocket(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o750 });
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`socket path ${path} exists and is not a socket; remove it or choose another --socket`);
  if (await socketAnswers(path)) throw new Error(`another gvisor-cri (or other server) is already serving on ${path}; stop it first or choose another --socket`);
  await unlink(path);
}

export async function releaseSocket(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}
