import type { VersionResponse__Output } from '../cri-api/generated/runtime/v1/VersionResponse.js';
import type { Command } from './command.js';
import { out } from './command.js';
import { toJson } from './format.js';
import { VERSION } from '../daemon/version.js';

export const version: Command = {
  name: 'version',
  usage: 'version',
  summary: 'versions of this client and of the daemon (Version)',
  flags: [],
  async run(ctx) {
    const client = ctx.client();
    const res = await client.call<VersionResponse__Output>('version', (o, cb) => client.runtime.Version({ version: 'v1' }, o, cb));
    if (ctx.output === 'json') out(toJson(res));
    else {
      out(
        `Client:             gvisor-cri ctl ${VERSION}\n` +
          `Version:            ${res.version}\n` +
          `RuntimeName:        ${res.runtime_name}\n` +
          `RuntimeVersion:     ${res.runtime_version}\n` +
          `RuntimeApiVersion:  ${res.runtime_api_version}\n`,
      );
    }
    return 0;
  },
};
