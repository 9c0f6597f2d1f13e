/**
 * Runs layer-apply.ts in worker threads, whose synchronous file system
 * calls must not stall the daemon's event loop. A few workers at most,
 * started on demand and ended after a while without work, so an idle daemon
 * holds none.
 */
import { Worker } from 'node:worker_threads';
import { ConcurrencyLimit } from '../common/index.js';
import { CriError } from '../cri-api/errors.js';
import { UnsafeLayerError } from './layer-apply.js';
import type { UnpackFailure, UnpackReply, UnpackRequest } from './unpack-messages.js';

/** Layers applied at once; more wait for a worker. */
const MAX_WORKERS = 2;
/** A worker left without work this long ends. */
const IDLE_MS = 15_000;

function revive(f: UnpackFailure): Error {
  if (f.kind === 'unsafe') return new UnsafeLayerError(f.message);
  if (f.kind === 'cri') return new CriError(f.code, f.message);
  return Object.assign(new Error(f.message), f.errno ? { code: f.errno } : {});
}

export class LayerUnpacker {
  private readonly idle: { worker: Worker; timer: NodeJS.Timeout }[] = [];
  private readonly slots = new ConcurrencyLimit(MAX_WORKERS);

  /** Makes `req.root` in a worker: the lower tree linked in, then the layer applied (see applyLayer); resolves to the bytes of tar unpacked. */
  apply(req: UnpackRequest, onSkipped: (path: string, type: string) => void): Promise<number> {
    return this.slots.run(async () => {
      const worker = this.take();
      let reply: UnpackReply;
      try {
        reply = await exchange(worker, req);
      } catch (err) {
        // A worker that failed or died is not used again.
        void worker.terminate();
        throw err;
      }
      this.putBack(worker);
      for (const s of reply.skipped) onSkipped(s.path, s.type);
      if (!reply.result.ok) throw revive(reply.result.error);
      return reply.result.bytes;
    });
  }

  private take(): Worker {
    const spare = this.idle.pop();
    if (spare) {
      clearTimeout(spare.timer);
      spare.worker.ref();
      return spare.worker;
    }
    return new Worker(new URL('./unpack-worker.js', import.meta.url));
  }

  /** An idle worker does not keep the process alive, and ends after IDLE_MS. */
  private putBack(worker: Worker): void {
    worker.unref();
    const timer = setTimeout(() => {
      const i = this.idle.findIndex((x) => x.worker === worker);
      if (i >= 0) this.idle.splice(i, 1);
      void worker.terminate();
    }, IDLE_MS);
    timer.unref();
    this.idle.push({ worker, timer });
  }
}

/** Sends one request to a worker that has no other, and waits for its reply (or its death). */
function exchange(worker: Worker, req: UnpackRequest): Promise<UnpackReply> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    const onMessage = (reply: UnpackReply): void => {
      done();
      resolve(reply);
    };
    const onError = (err: Error): void => {
      done();
      reject(new Error(`layer unpack worker failed: ${err.message}`, { cause: err }));
    };
    const onExit = (code: number): void => {
      done();
      reject(new Error(`layer unpack worker exited with code ${code}`));
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
    worker.postMessage(req);
  });
}
