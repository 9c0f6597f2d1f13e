import type { PullImageResponse__Output } from '../cri-api/generated/runtime/v1/PullImageResponse.js';
import type { Command } from './command.js';
import { out } from './command.js';
import { toJson } from './format.js';
import { usageError } from './client.js';

/** A pull waits for the registry; the daemon's own pull_progress_timeout aborts one that stalls. */
const DEFAULT_PULL_WAIT_MS = 60 * 60 * 1000;

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * PullImage reports no byte progress, so a person at a terminal gets a
 * spinner with the elapsed time (on stderr, keeping stdout for the result).
 */
function startSpinner(image: string): () => void {
  if (!process.stderr.isTTY) return () => undefined;
  const started = Date.now();
  let frame = 0;
  const draw = (): void => {
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`\r\x1b[K${SPINNER[frame++ % SPINNER.length]} Pulling ${image} (${secs}s)`);
  };
  draw();
  const timer = setInterval(draw, 100);
  return () => {
    clearInterval(timer);
    process.stderr.write('\r\x1b[K');
  };
}

export const pull: Command = {
  name: 'pull',
  usage: 'pull IMAGE [--creds USER:PASSWORD]',
  summary: 'pull an image (PullImage)',
  flags: [{ name: 'creds', value: true }],
  async run(ctx, args) {
    if (args.positionals.length !== 1) throw usageError('pull takes exactly one IMAGE');
    const image = args.positionals[0]!;
    const creds = args.flags.get('creds');
    let auth: { username: string; password: string } | undefined;
    if (creds !== undefined) {
      const colon = creds.indexOf(':');
      if (colon <= 0) throw usageError('--creds must be USER:PASSWORD');
      auth = { username: creds.slice(0, colon), password: creds.slice(colon + 1) };
    }
    const client = ctx.client();
    const stop = startSpinner(image);
    let res: PullImageResponse__Output;
    try {
      res = await client.call<PullImageResponse__Output>(`pull ${image}`, (o, cb) => client.image.PullImage({ image: { image }, auth }, o, cb), ctx.timeoutGiven ? 0 : DEFAULT_PULL_WAIT_MS);
    } finally {
      stop();
    }
    if (ctx.output === 'json') out(toJson(res));
    else out(`Image is up to date for ${res.image_ref}\n`);
    return 0;
  },
};
