/** A layer-unpacker.ts worker: makes the snapshot trees it is sent, one at a time. It imports only what it needs: its start is on a pull's path. */
import { mkdirSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { applyLayer } from './layer-apply.js';
import { linkTree } from './link-tree.js';
import { describeFailure, type UnpackReply, type UnpackRequest } from './unpack-messages.js';

const port = parentPort;
if (!port) throw new Error('unpack-worker.js runs only as a worker thread');

async function build(req: UnpackRequest, skipped: UnpackReply['skipped']): Promise<number> {
  if (req.lower !== undefined) linkTree(req.lower, req.root);
  else mkdirSync(req.root, { mode: 0o755 });
  return applyLayer(req.root, req.blobPath, req.diffId, { budget: req.budget, limitBytes: req.limitBytes, onSkipped: (path, type) => skipped.push({ path, type }) });
}

port.on('message', (req: UnpackRequest) => {
  const skipped: UnpackReply['skipped'] = [];
  build(req, skipped).then(
    (bytes) => port.postMessage({ skipped, result: { ok: true, bytes } } satisfies UnpackReply),
    (err: unknown) => port.postMessage({ skipped, result: { ok: false, error: describeFailure(err) } } satisfies UnpackReply),
  );
});
