import type { Image__Output } from '../cri-api/generated/runtime/v1/Image.js';
import type { ListImagesResponse__Output } from '../cri-api/generated/runtime/v1/ListImagesResponse.js';
import type { Command } from './command.js';
import { out } from './command.js';
import { humanSize, shortId, table, toJson } from './format.js';

/** Splits "host:5000/repo:tag" at the tag's colon, not the port's. */
export function splitTag(ref: string): { repo: string; tag: string } {
  const at = ref.indexOf('@');
  if (at >= 0) return { repo: ref.slice(0, at), tag: '<none>' };
  const colon = ref.lastIndexOf(':');
  if (colon > ref.lastIndexOf('/')) return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repo: ref, tag: 'latest' };
}

/** One row per tag; an untagged image shows its digest's repository with tag <none>. */
function rows(img: Image__Output): string[][] {
  const refs = img.repo_tags.length > 0 ? img.repo_tags.map(splitTag) : img.repo_digests.slice(0, 1).map((d) => ({ repo: splitTag(d).repo, tag: '<none>' }));
  if (refs.length === 0) refs.push({ repo: '<none>', tag: '<none>' });
  return refs.map((r) => [r.repo, r.tag, shortId(img.id), humanSize(img.size)]);
}

export const images: Command = {
  name: 'images',
  usage: 'images [-q]',
  summary: 'list images (ListImages)',
  flags: [{ name: 'quiet', short: 'q' }],
  async run(ctx, args) {
    const client = ctx.client();
    const res = await client.call<ListImagesResponse__Output>('list images', (o, cb) => client.image.ListImages({}, o, cb));
    if (ctx.output === 'json') out(toJson(res));
    else if (args.flags.has('quiet')) out(res.images.map((i) => `${i.id}\n`).join(''));
    else out(table(['IMAGE', 'TAG', 'IMAGE ID', 'SIZE'], res.images.flatMap(rows).sort((a, b) => `${a[0]}:${a[1]}`.localeCompare(`${b[0]}:${b[1]}`))));
    return 0;
  },
};
