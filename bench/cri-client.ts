/**
 * A gRPC CRI client over a unix socket, from our proto (wire-identical to
 * upstream CRI v1), so gvisor-cri and containerd are driven by the same code.
 */
import { socketAnswers } from '../daemon/socket.js';
import type * as grpc from '@grpc/grpc-js';
import { createCriClients } from '../cri-api/server.js';

export type CriService = 'runtime' | 'image';

export class CriClient {
  private readonly clients: ReturnType<typeof createCriClients>;

  constructor(readonly socket: string) {
    this.clients = createCriClients(socket);
  }

  /** One unary RPC with a deadline; rejects with the gRPC error, its message prefixed by the RPC name. */
  call<Res = unknown>(service: CriService, rpc: string, req: object, timeoutMs = 120_000): Promise<Res> {
    const client = this.clients[service] as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => void>;
    const fn = client[rpc];
    if (typeof fn !== 'function') return Promise.reject(new Error(`no RPC ${rpc} on the ${service} service`));
    return new Promise((resolve, reject) => {
      fn.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new Error(`${rpc}: ${err.details || err.message}`));
        else resolve(res);
      });
    });
  }

  close(): void {
    this.clients.close();
  }
}

/** Waits until something accepts connections on `path`; `alive` false stops waiting early. */
export async function waitForSocket(path: string, timeoutMs: number, alive: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`${what} exited before serving ${path}`);
    if (await socketAnswers(path)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not serve ${path} within ${timeoutMs} ms`);
}
