/**
 * Runs `fn` after every earlier call with the same key has settled (a
 * failed one too); calls with different keys run in parallel. The daemon's
 * one lock: per pod and container in the runtime, per pod in the network
 * module, one key for the image store's records.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
