import { chmod, mkdir, stat } from 'node:fs/promises';
import { startCriServer, type CriHandlers, type CriServer } from '../cri-api/server.js';
import type { Logger } from '../cri-api/logger.js';
import type { Config } from './config.js';
import { claimSocket, releaseSocket } from './socket.js';
import { openServices, type Services } from './services.js';
import { buildHandlers } from './handlers.js';
import { setImageLimits } from '../image-store/manifest.js';

/** How long in-flight calls may take to finish on SIGTERM before they are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

export interface RunningDaemon {
  server: CriServer;
  services: Services;
  stop(): Promise<void>;
}

/**
 * Makes `dir` (and missing parents) mode 0700, also when it exists already
 * with looser bits: the state and run dirs hold pod records, container
 * environments, FIFOs and image trees with setuid files that no other local
 * user may reach. A loosened dir is fixed, and the log says so.
 */
export async function ensurePrivateDir(dir: string, what: string, logger: Logger): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if (!st.isDirectory()) throw new Error(`${what} ${dir} is not a directory`);
  if (process.getuid && st.uid !== process.getuid()) {
    throw new Error(`${what} ${dir} belongs to uid ${st.uid}, not to the daemon (uid ${process.getuid()}); another user could change what it holds: fix its owner`);
  }
  const mode = st.mode & 0o7777;
  if (mode !== 0o700) {
    logger.warn({ dir, mode: mode.toString(8) }, `${what} was reachable by other users: mode set to 0700`);
    await chmod(dir, 0o700);
  }
}

export async function startDaemon(config: Config, logger: Logger): Promise<RunningDaemon> {
  await ensurePrivateDir(config.stateDir, 'state-dir', logger);
  await ensurePrivateDir(config.runDir, 'run-dir', logger);
  setImageLimits({ maxLayers: config.imageMaxLayers, maxUnpackedBytes: config.imageMaxUnpackedMib * 1024 * 1024 });
  await claimSocket(config.socket);
  const services = await openServices(config, logger);
  let server: CriServer;
  try {
    const handlers: CriHandlers = buildHandlers(services);
    server = await startCriServer(config.socket, handlers, logger);
  } catch (err) {
    await services.close();
    throw err;
  }
  logger.info({ socket: config.socket, streamUrl: services.streamUrl }, 'gvisor-cri serving');
  let stopping: Promise<void> | undefined;
  return {
    server,
    services,
    stop() {
      stopping ??= (async () => {
        await server.shutdown(SHUTDOWN_GRACE_MS);
        await services.close();
        await releaseSocket(config.socket);
      })();
      return stopping;
    },
  };
}

/** Runs the daemon until SIGTERM or SIGINT, then stops cleanly and exits 0; SIGHUP reopens the audit log (logrotate). */
export async function runDaemon(config: Config, logger: Logger): Promise<void> {
  const daemon = await startDaemon(config, logger);
  const onHangup = (): void => {
    logger.info('SIGHUP: reopening the audit log');
    daemon.services.audit.reopen();
  };
  process.on('SIGHUP', onHangup);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'stopping: no new calls, letting in-flight ones finish');
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGHUP', onHangup);
      void daemon.stop().then(resolve, (err: unknown) => {
        logger.error({ err }, 'error while stopping');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  logger.info('stopped');
}
