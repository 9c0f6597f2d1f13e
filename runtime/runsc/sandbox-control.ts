/**
 * A container's exit, asked of its sandbox over the sandbox's control
 * socket instead of through `runsc wait`.
 *
 * `runsc wait` is a Go process per running container: about 3.7 MiB PSS
 * each while it waits, and its start-up competes for the CPU with whatever
 * comes right after a StartContainer (the first ExecSync into a fresh
 * container took about 20 ms longer while it started; lowering its priority
 * did not help). All it does is connect to `<root>/runsc-<sandbox id>.sock`
 * and make one urpc call: a JSON object `{"method": "containerManager.Wait",
 * "arg": "<container id>"}` out, `{"success": true, "err": "", "result":
 * <wait status>}` back, over a unix stream socket (checked with runsc
 * 0.0~20240729). The daemon makes that call itself.
 *
 * Whatever is not an exit status (no socket there, a refused connection, a
 * refused call, text that is not such an answer) is WaitUnanswered: the
 * caller asks `runsc wait` then, so a runsc that moved its socket or renamed
 * the call costs a process again, never a wrong exit. Only a sandbox that
 * closes the connection while the container runs (it died, as when the host
 * OOM killer ends the sentry) is an error here: `runsc wait` fails then too.
 */
import { closeSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { RunscError } from './runsc.js';

const METHOD = 'containerManager.Wait';
/** Longest unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;
/** An answer to Wait is a few dozen bytes; more is not that protocol. */
const MAX_ANSWER = 64 << 10;

/** The sandbox could not be asked; `runsc wait` can say what happened. */
export class WaitUnanswered extends Error {}

interface Answer {
  success?: unknown;
  err?: unknown;
  result?: unknown;
}

export class SandboxControl {
  constructor(private readonly root: string) {}

  /**
   * Waits for the container's first process to end and returns its exit
   * status as `runsc wait` prints it (128 + signal for a killed one). A
   * sandbox that dies first is a RunscError of kind 'not-running', `signal`
   * aborting one of kind 'cancelled'.
   */
  wait(sandboxId: string, containerId: string, signal?: AbortSignal): Promise<number> {
    const what = `container ${containerId} in sandbox ${sandboxId}`;
    return new Promise<number>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new RunscError('cancelled', 'wait', containerId, 'cancelled'));
        return;
      }
      const name = `runsc-${sandboxId}.sock`;
      let path = join(this.root, name);
      // A path too long for a unix socket is reached, as runsc binds it, through a descriptor of its dir.
      let rootFd: number | undefined;
      if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
        try {
          rootFd = openSync(this.root, 'r');
        } catch (err) {
          reject(new WaitUnanswered(`${what}: ${(err as Error).message}`));
          return;
        }
        path = `/proc/self/fd/${rootFd}/${name}`;
      }
      const releaseRoot = (): void => {
        if (rootFd !== undefined) closeSync(rootFd);
        rootFd = undefined;
      };
      const socket = connect(path);
      let connected = false;
      let text = '';
      const finish = (outcome: { status: number } | { error: Error }): void => {
        signal?.removeEventListener('abort', onAbort);
        releaseRoot();
        socket.destroy();
        if ('status' in outcome) resolve(outcome.status);
        else reject(outcome.error);
      };
      const onAbort = (): void => finish({ error: new RunscError('cancelled', 'wait', containerId, 'cancelled') });
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.setEncoding('utf8');
      socket.on('connect', () => {
        connected = true;
        releaseRoot();
        socket.write(JSON.stringify({ method: METHOD, arg: containerId }));
      });
      socket.on('data', (chunk: string) => {
        text += chunk;
        if (text.length > MAX_ANSWER) return finish({ error: new WaitUnanswered(`${what}: the control socket's answer is not urpc's`) });
        let answer: Answer;
        try {
          answer = JSON.parse(text) as Answer;
        } catch {
          // The answer may come in pieces: wait for the rest.
          return;
        }
        finish(readAnswer(answer, what));
      });
      // Before connecting: no control socket to be had. After: the sandbox went away while the container ran.
      const unanswered = (err?: Error): void =>
        finish({
          error: connected
            ? new RunscError('not-running', 'wait', containerId, `the sandbox closed its control socket before ${what} ended${err ? ` (${err.message})` : ''}`)
            : new WaitUnanswered(`${what}: control socket: ${err?.message ?? 'closed'}`),
        });
      socket.on('error', unanswered);
      socket.on('end', () => unanswered());
    });
  }
}

function readAnswer(answer: Answer, what: string): { status: number } | { error: Error } {
  if (answer.success === true && typeof answer.result === 'number') return { status: exitStatus(answer.result) };
  // A refusal (say, a container this sandbox does not know) is runsc wait's to explain, as it always was.
  const why = answer.success === false && typeof answer.err === 'string' ? answer.err : 'the control socket\'s answer is not urpc\'s';
  return { error: new WaitUnanswered(`${what}: ${why}`) };
}

/** A wait(2) status as runsc wait reports it: the exit code, or 128 + the signal that killed the process. */
export function exitStatus(ws: number): number {
  const signal = ws & 0x7f;
  if (signal !== 0 && signal !== 0x7f) return 128 + signal;
  return (ws >> 8) & 0xff;
}
