import type { Command, Ctx } from './command.js';
import { out } from './command.js';
import { CtlError, usageError } from './client.js';
import { intFlag } from './args.js';
import { resolveContainer, resolvePod } from './resolve.js';

/** Runs `act` for each argument; one failure does not stop the rest, but makes the exit code 1. */
export async function eachId(ids: string[], act: (id: string) => Promise<string>): Promise<number> {
  let failed = false;
  for (const id of ids) {
    try {
      out(`${await act(id)}\n`);
    } catch (err) {
      if (!(err instanceof CtlError) || err.exitCode === 2) throw err;
      process.stderr.write(`gvisor-cri ctl: ${err.message}\n`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

export async function stopContainer(ctx: Ctx, id: string, timeoutSec: number): Promise<void> {
  const client = ctx.client();
  // The daemon waits up to timeoutSec for the process before killing it; the deadline must outlast that.
  await client.call(`stop container ${id}`, (o, cb) => client.runtime.StopContainer({ container_id: id, timeout: timeoutSec }, o, cb), timeoutSec * 1000);
}

export async function stopPod(ctx: Ctx, id: string): Promise<void> {
  const client = ctx.client();
  // Stopping a pod stops its containers with their own grace periods.
  await client.call(`stop pod ${id}`, (o, cb) => client.runtime.StopPodSandbox({ pod_sandbox_id: id }, o, cb), 60_000);
}

export const stop: Command = {
  name: 'stop',
  usage: 'stop [-t SECONDS] CONTAINER...',
  summary: 'stop containers, killing them after the grace period (default 10 s) (StopContainer)',
  flags: [{ name: 'stop-timeout', short: 't', value: true }],
  async run(ctx, args) {
    if (args.positionals.length === 0) throw usageError('stop needs at least one CONTAINER');
    const grace = intFlag(args, 'stop-timeout', 10);
    return eachId(args.positionals, async (given) => {
      const c = await resolveContainer(ctx.client(), given);
      await stopContainer(ctx, c.id, grace);
      return c.id;
    });
  },
};

export const stopp: Command = {
  name: 'stopp',
  usage: 'stopp POD...',
  summary: 'stop pod sandboxes and their containers (StopPodSandbox)',
  flags: [],
  async run(ctx, args) {
    if (args.positionals.length === 0) throw usageError('stopp needs at least one POD');
    return eachId(args.positionals, async (given) => {
      const p = await resolvePod(ctx.client(), given);
      await stopPod(ctx, p.id);
      return `Stopped sandbox ${p.id}`;
    });
  },
};
