import type { ListPodSandboxResponse__Output } from '../cri-api/generated/runtime/v1/ListPodSandboxResponse.js';
import type { Command } from './command.js';
import { out } from './command.js';
import { ago, shortId, stateName, table, toJson } from './format.js';

export const pods: Command = {
  name: 'pods',
  usage: 'pods [-q]',
  summary: 'list pod sandboxes, newest first (ListPodSandbox)',
  flags: [{ name: 'quiet', short: 'q' }],
  async run(ctx, args) {
    const client = ctx.client();
    const res = await client.call<ListPodSandboxResponse__Output>('list pods', (o, cb) => client.runtime.ListPodSandbox({}, o, cb));
    const items = [...res.items].sort((a, b) => (BigInt(b.created_at || '0') > BigInt(a.created_at || '0') ? 1 : -1));
    if (ctx.output === 'json') out(toJson({ items }));
    else if (args.flags.has('quiet')) out(items.map((p) => `${p.id}\n`).join(''));
    else {
      out(table(
        ['POD ID', 'CREATED', 'STATE', 'NAME', 'NAMESPACE', 'ATTEMPT', 'RUNTIME'],
        items.map((p) => [shortId(p.id), ago(p.created_at), stateName(p.state), p.metadata?.name ?? '', p.metadata?.namespace ?? '', String(p.metadata?.attempt ?? 0), p.runtime_handler || '(default)']),
      ));
    }
    return 0;
  },
};
