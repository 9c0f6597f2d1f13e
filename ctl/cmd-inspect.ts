import type { ContainerStatusResponse__Output } from '../cri-api/generated/runtime/v1/ContainerStatusResponse.js';
import type { PodSandboxStatusResponse__Output } from '../cri-api/generated/runtime/v1/PodSandboxStatusResponse.js';
import type { Command } from './command.js';
import { out } from './command.js';
import { usageError } from './client.js';
import { toJson } from './format.js';
import { resolveContainer, resolvePod } from './resolve.js';

export const inspect: Command = {
  name: 'inspect',
  usage: 'inspect CONTAINER',
  summary: 'container status with runtime details, as JSON (ContainerStatus, verbose)',
  flags: [],
  async run(ctx, args) {
    if (args.positionals.length !== 1) throw usageError('inspect takes exactly one CONTAINER');
    const client = ctx.client();
    const c = await resolveContainer(client, args.positionals[0]!);
    const res = await client.call<ContainerStatusResponse__Output>(`inspect container ${c.id}`, (o, cb) => client.runtime.ContainerStatus({ container_id: c.id, verbose: true }, o, cb));
    out(toJson(res));
    return 0;
  },
};

export const inspectp: Command = {
  name: 'inspectp',
  usage: 'inspectp POD',
  summary: 'pod sandbox status with runtime details, as JSON (PodSandboxStatus, verbose)',
  flags: [],
  async run(ctx, args) {
    if (args.positionals.length !== 1) throw usageError('inspectp takes exactly one POD');
    const client = ctx.client();
    const p = await resolvePod(client, args.positionals[0]!);
    const res = await client.call<PodSandboxStatusResponse__Output>(`inspect pod ${p.id}`, (o, cb) => client.runtime.PodSandboxStatus({ pod_sandbox_id: p.id, verbose: true }, o, cb));
    out(toJson(res));
    return 0;
  },
};
