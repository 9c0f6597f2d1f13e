import type { Image__Output } from '../cri-api/generated/runtime/v1/Image.js';
import type { ImageStatusResponse__Output } from '../cri-api/generated/runtime/v1/ImageStatusResponse.js';
import type { ListImagesResponse__Output } from '../cri-api/generated/runtime/v1/ListImagesResponse.js';
import type { Command } from './command.js';
import { out } from './command.js';
import { CtlError, usageError, type CtlClient } from './client.js';
import { shortId } from './format.js';

/** A tag, digest reference, full ID or unambiguous ID prefix → the image; else the daemon's own reference lookup. */
async function findImage(client: CtlClient, given: string): Promise<Image__Output> {
  const list = await client.call<ListImagesResponse__Output>(`rmi ${given}: list images`, (o, cb) => client.image.ListImages({}, o, cb));
  const named = list.images.find((i) => i.id === given || i.repo_tags.includes(given) || i.repo_digests.includes(given));
  if (named) return named;
  const bare = given.replace(/^sha256:/, '');
  if (/^[0-9a-f]+$/.test(bare)) {
    const byId = list.images.filter((i) => i.id.replace(/^sha256:/, '').startsWith(bare));
    if (byId.length > 1) throw new CtlError(`rmi ${given}: ambiguous image ID prefix: matches ${byId.map((i) => shortId(i.id)).join(', ')}`);
    if (byId.length === 1) return byId[0]!;
  }
  // Short names ("busybox") are normalised by the daemon, not guessed here.
  const st = await client.call<ImageStatusResponse__Output>(`rmi ${given}: image status`, (o, cb) => client.image.ImageStatus({ image: { image: given } }, o, cb)).catch(() => undefined);
  if (st?.image) return st.image;
  throw new CtlError(`rmi ${given}: image not found`);
}

export const rmi: Command = {
  name: 'rmi',
  usage: 'rmi IMAGE...',
  summary: 'remove images by reference or ID prefix (RemoveImage)',
  flags: [],
  async run(ctx, args) {
    if (args.positionals.length === 0) throw usageError('rmi needs at least one IMAGE');
    const client = ctx.client();
    let failed = false;
    for (const given of args.positionals) {
      try {
        const image = await findImage(client, given);
        await client.call(`rmi ${given}`, (o, cb) => client.image.RemoveImage({ image: { image: image.id } }, o, cb));
        out(`Deleted: ${given}\n`);
      } catch (err) {
        // Keep going: one missing image should not leave the others in place.
        if (!(err instanceof CtlError)) throw err;
        process.stderr.write(`gvisor-cri ctl: ${err.message}\n`);
        failed = true;
      }
    }
    return failed ? 1 : 0;
  },
};
