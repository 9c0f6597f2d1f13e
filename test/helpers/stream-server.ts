// Starts a streaming server on loopback for a test and stops it afterwards.

import type { TestContext } from 'node:test';
import { silentLogger } from '../../cri-api/logger.js';
import { StreamServer, type StreamBackend, type StreamServerOptions } from '../../stream/index.js';

export async function startTestServer(t: TestContext | { after(fn: () => Promise<void>): void }, backend: StreamBackend, opts: Partial<StreamServerOptions> = {}): Promise<StreamServer> {
  const server = await StreamServer.start({ address: '127.0.0.1', port: 0, backend, logger: silentLogger, ...opts });
  t.after(() => server.close());
  return server;
}
