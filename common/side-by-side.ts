/**
 * Runs independent steps at once. Every step settles before a
 * failure is thrown, so the rollback that follows never races a step still
 * making something.
 */
export async function sideBySide<T extends readonly unknown[]>(steps: { [K in keyof T]: Promise<T[K]> | T[K] }): Promise<T> {
  const results = await Promise.allSettled(steps);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
