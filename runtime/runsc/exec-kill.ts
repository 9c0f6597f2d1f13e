/**
 * Ending an exec the daemon gave up on (ExecSync's timeout, a streaming
 * client gone): runsc exec does not forward a kill of itself into the
 * sandbox, so the process is killed inside by its pid there, and the
 * host-side runsc exec, which then exits by itself, is killed too if not.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from '../../cri-api/logger.js';
import type { Runsc } from './runsc.js';

/** How long the host-side runsc exec gets to exit after its process inside was killed. */
const HOST_KILL_GRACE_MS = 2000;

/** `internalPidFile` is runsc exec's --internal-pid-file; `killHost` kills the host-side runsc exec. */
export async function killExec(runsc: Runsc, id: string, internalPidFile: string, killHost: () => void, logger: Logger): Promise<void> {
  try {
    const pid = Number.parseInt(await readFile(internalPidFile, 'utf8'), 10);
    if (Number.isInteger(pid) && pid > 0) await runsc.kill(id, 'SIGKILL', { pid });
  } catch (err) {
    logger.debug({ err, container: id }, 'killing an abandoned exec inside the sandbox');
  }
  setTimeout(() => {
    try {
      killHost();
    } catch {
      // Already gone.
    }
  }, HOST_KILL_GRACE_MS).unref();
}
