/** Runs `gvisor-cri ctl` (the built bin) as an operator would, against a test daemon's socket. */
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './daemon.js';

export interface CtlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CtlProcess {
  proc: ChildProcess;
  /** Output so far. */
  stdout(): string;
  done: Promise<CtlResult>;
}

/** Starts `gvisor-cri ctl --socket SOCKET ARGS`; `input` is written to its stdin, then stdin is closed. */
export function startCtl(socket: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): CtlProcess {
  const proc = spawn(process.execPath, [BIN, 'ctl', '--socket', socket, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdin!.on('error', () => undefined);
  proc.stdin!.end(opts.input ?? '');
  const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const done = new Promise<CtlResult>((resolve) => {
    proc.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  return { proc, stdout: () => stdout, done };
}

export function ctl(socket: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CtlResult> {
  return startCtl(socket, args, opts).done;
}
