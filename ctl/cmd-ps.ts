import type { ListContainersResponse__Output } from '../cri-api/generated/runtime/v1/ListContainersResponse.js';
import type { Command } from './command.js';
import { out } from './command.js';
import { ago, shortId, stateName, table, toJson } from './format.js';

export const ps: Command = {
  name: 'ps',
  usage: 'ps [-a] [-q]',
  summary: 'list running containers, with -a all of them (ListContainers)',
  flags: [{ name: 'all', short: 'a' }, { name: 'quiet', short: 'q' }],
  async run(ctx, args) {
    const client = ctx.client();
    // Without -a only running ones, as crictl and docker do.
    const filter = args.flags.has('all') ? {} : { filter: { state: { state: 'CONTAINER_RUNNING' as const } } };
    const res = await client.call<ListContainersResponse__Output>('list containers', (o, cb) => client.runtime.ListContainers(filter, o, cb));
    const containers = [...res.containers].sort((a, b) => (BigInt(b.created_at || '0') > BigInt(a.created_at || '0') ? 1 : -1));
    if (ctx.output === 'json') out(toJson({ containers }));
    else if (args.flags.has('quiet')) out(containers.map((c) => `${c.id}\n`).join(''));
    else {
      out(table(
        ['CONTAINER', 'IMAGE', 'CREATED', 'STATE', 'NAME', 'ATTEMPT', 'POD ID'],
        containers.map((c) => [shortId(c.id), c.image?.image || c.image_ref, ago(c.created_at), stateName(c.state), c.metadata?.name ?? '', String(c.metadata?.attempt ?? 0), shortId(c.pod_sandbox_id)]),
      ));
    }
    return 0;
  },
};
