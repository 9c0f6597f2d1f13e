import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The daemon's one logger. Credentials must never reach it: the redact paths
 * cover every AuthConfig field upstream marks as sensitive, wherever it nests.
 */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { name: 'gvisor-cri' },
    redact: {
      paths: ['*.password', '*.auth', '*.identity_token', '*.registry_token', '*.*.password', '*.*.auth', '*.*.identity_token', '*.*.registry_token', 'password', 'auth', 'identity_token', 'registry_token'],
      censor: '[redacted]',
    },
  });
}

/** A logger that writes nothing, for unit tests of modules that take one. */
export const silentLogger: Logger = pino({ level: 'silent' });
