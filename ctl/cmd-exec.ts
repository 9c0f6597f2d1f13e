import * as grpc from '@grpc/grpc-js';
import type { ExecResponse__Output } from '../cri-api/generated/runtime/v1/ExecResponse.js';
import type { ExecSyncResponse__Output } from '../cri-api/generated/runtime/v1/ExecSyncResponse.js';
import type { Command, Ctx } from './command.js';
import { CtlError, grpcCode, usageError } from './client.js';
import { resolveContainer } from './resolve.js';
import { streamExec } from './exec-stream.js';

/** Without --timeout a command may run as long as it likes. */
const UNBOUNDED_MS = 365 * 24 * 3600 * 1000;

async function execSync(ctx: Ctx, id: string, cmd: string[]): Promise<number> {
  const client = ctx.client();
  const seconds = ctx.timeoutGiven ? Math.ceil(ctx.timeoutMs / 1000) : 0;
  // The daemon enforces the command's timeout; the deadline only needs to outlast it.
  const res = await client.call<ExecSyncResponse__Output>(`exec in container ${id}`, (o, cb) => client.runtime.ExecSync({ container_id: id, cmd, timeout: seconds }, o, cb), ctx.timeoutGiven ? 5000 : UNBOUNDED_MS);
  process.stdout.write(res.stdout);
  process.stderr.write(res.stderr);
  return res.exit_code;
}

async function execInteractive(ctx: Ctx, id: string, cmd: string[], stdin: boolean, tty: boolean): Promise<number> {
  const client = ctx.client();
  let res: ExecResponse__Output;
  try {
    res = await client.call<ExecResponse__Output>(`exec in container ${id}`, (o, cb) => client.runtime.Exec({ container_id: id, cmd, tty, stdin, stdout: true, stderr: !tty }, o, cb));
  } catch (err) {
    if (grpcCode(err) === grpc.status.UNIMPLEMENTED) {
      throw new CtlError(`exec -i/-t in container ${id}: this daemon does not serve interactive exec (the Exec RPC answered UNIMPLEMENTED); run the command without -i/-t, which uses ExecSync`, 1, err);
    }
    throw err;
  }
  const raw = tty && stdin && process.stdin.isTTY;
  if (raw) process.stdin.setRawMode(true);
  try {
    return await streamExec(res.url, {
      stdin: stdin ? process.stdin : undefined,
      stdout: process.stdout,
      stderr: tty ? undefined : process.stderr,
      tty,
      size: process.stdout.isTTY ? () => ({ width: process.stdout.columns, height: process.stdout.rows }) : undefined,
      onResize: (listener) => {
        process.stdout.on('resize', listener);
        return () => process.stdout.off('resize', listener);
      },
    });
  } finally {
    if (raw) process.stdin.setRawMode(false);
  }
}

export const exec: Command = {
  name: 'exec',
  usage: 'exec [-i] [-t] CONTAINER CMD [ARG...]',
  summary: "run a command in a container and exit with its exit code (ExecSync; with -i/-t interactive over the Exec stream)",
  flags: [{ name: 'interactive', short: 'i' }, { name: 'tty', short: 't' }],
  stopAtPositional: true,
  async run(ctx, args) {
    const [given, ...cmd] = args.positionals;
    if (given === undefined || cmd.length === 0) throw usageError('exec needs a CONTAINER and a command');
    const c = await resolveContainer(ctx.client(), given);
    const stdin = args.flags.has('interactive');
    const tty = args.flags.has('tty');
    if (!stdin && !tty) return execSync(ctx, c.id, cmd);
    return execInteractive(ctx, c.id, cmd, stdin, tty);
  },
};
