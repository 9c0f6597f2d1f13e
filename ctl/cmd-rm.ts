import type { Command } from './command.js';
import { CtlError, usageError } from './client.js';
import { resolveContainer, resolvePod } from './resolve.js';
import { eachId, stopContainer, stopPod } from './cmd-stop.js';

export const rm: Command = {
  name: 'rm',
  usage: 'rm [-f] CONTAINER...',
  summary: 'remove containers; -f stops running ones first (RemoveContainer)',
  flags: [{ name: 'force', short: 'f' }],
  async run(ctx, args) {
    if (args.positionals.length === 0) throw usageError('rm needs at least one CONTAINER');
    const force = args.flags.has('force');
    const client = ctx.client();
    return eachId(args.positionals, async (given) => {
      const c = await resolveContainer(client, given);
      if (c.state === 'CONTAINER_RUNNING') {
        if (!force) throw new CtlError(`rm container ${c.id}: it is running; stop it first or use rm -f`);
        await stopContainer(ctx, c.id, 0);
      }
      await client.call(`rm container ${c.id}`, (o, cb) => client.runtime.RemoveContainer({ container_id: c.id }, o, cb));
      return c.id;
    });
  },
};

export const rmp: Command = {
  name: 'rmp',
  usage: 'rmp [-f] POD...',
  summary: 'remove pod sandboxes and their containers; -f stops ready ones first (RemovePodSandbox)',
  flags: [{ name: 'force', short: 'f' }],
  async run(ctx, args) {
    if (args.positionals.length === 0) throw usageError('rmp needs at least one POD');
    const force = args.flags.has('force');
    const client = ctx.client();
    return eachId(args.positionals, async (given) => {
      const p = await resolvePod(client, given);
      if (p.state === 'SANDBOX_READY') {
        if (!force) throw new CtlError(`rmp pod ${p.id}: it is ready (running); stop it first with stopp or use rmp -f`);
        await stopPod(ctx, p.id);
      }
      await client.call(`rm pod ${p.id}`, (o, cb) => client.runtime.RemovePodSandbox({ pod_sandbox_id: p.id }, o, cb), 60_000);
      return `Removed sandbox ${p.id}`;
    });
  },
};
