/** What every subcommand gets and provides; one file per subcommand implements it. */
import type { CtlClient } from './client.js';
import type { FlagSpec, Parsed } from './args.js';

export interface Ctx {
  /** Connects on first use, so usage errors never wait on the socket. */
  client(): CtlClient;
  output: 'json' | 'table';
  /** Seconds, from --timeout: the deadline of each RPC. */
  timeoutMs: number;
  /** --timeout was given: commands that wait by design (pull) keep to it too. */
  timeoutGiven: boolean;
}

export interface Command {
  name: string;
  /** `name ARGS`, shown in the usage text. */
  usage: string;
  summary: string;
  flags: FlagSpec[];
  /** Flags after the first positional belong to it (exec's command line). */
  stopAtPositional?: boolean;
  /** Resolves with the exit code. */
  run(ctx: Ctx, args: Parsed): Promise<number>;
}

export function out(text: string): void {
  process.stdout.write(text);
}
