/**
 * The Stream* list RPCs (StreamPodSandboxes, StreamContainers, ...) answer
 * what their List* twins answer, split over several messages so that a long
 * list never meets gRPC's message size limit (4 MiB by default in kubelet's
 * client for a single response).
 */

/** A message stays well under 4 MiB: items are counted by their JSON size, a fair bound of their protobuf size. */
const BATCH_BYTES = 1024 * 1024;
const BATCH_ITEMS = 500;

/** Sends `items` as messages of `wrap(batch)`; always at least one, so a caller sees an answer for an empty list too. */
export async function sendInBatches<T, M>(items: readonly T[], wrap: (batch: T[]) => M, send: (message: M) => Promise<void>): Promise<void> {
  let batch: T[] = [];
  let bytes = 0;
  let sent = 0;
  for (const item of items) {
    const size = JSON.stringify(item).length;
    if (batch.length > 0 && (bytes + size > BATCH_BYTES || batch.length >= BATCH_ITEMS)) {
      await send(wrap(batch));
      sent++;
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += size;
  }
  if (batch.length > 0 || sent === 0) await send(wrap(batch));
}
