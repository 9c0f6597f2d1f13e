import type { StatusResponse__Output } from '../cri-api/generated/runtime/v1/StatusResponse.js';
import type { Command } from './command.js';
import { out } from './command.js';
import { toJson } from './format.js';

export const info: Command = {
  name: 'info',
  usage: 'info',
  summary: 'runtime conditions and details, as JSON (Status, verbose)',
  flags: [],
  async run(ctx) {
    const client = ctx.client();
    const res = await client.call<StatusResponse__Output>('info', (o, cb) => client.runtime.Status({ verbose: true }, o, cb));
    out(toJson(res));
    return 0;
  },
};
