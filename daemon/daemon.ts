import { mkdir } from 'node:fs/promises';
import { startCriServer, type CriHandlers, type CriServer } from '../cri-api/server.js';
import type { Logger } from '../cri-api/logger.js';
import type { Config } from './config.js';
import { claimSocket, releaseSocket } from './socket.js';
import { openServices, type Services } from './services.js';
import { buildHandlers } from './handlers.js';

/** How long in-flight calls may take to finish on SIGTERM before they are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

export interface RunningDaemon {
  server: CriServer;
  services: Services;
  stop(): Promise<void>;
}

export async function startDaemon(config: Config, logger: Logger): Promise<RunningDaemon> {
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });
  await mkdir(config.runDir, { recursive: true, mode: 0o700 });
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

/** Runs the daemon until SIGTERM or SIGINT, then stops cleanly and exits 0. */
export async function runDaemon(config: Config, logger: Logger): Promise<void> {
  const daemon = await startDaemon(config, logger);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'stopping: no new calls, letting in-flight ones finish');
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
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
