// A StreamBackend that runs host processes and dials host TCP ports: the
// streaming server's own tests exercise the protocol with it, without pods.

import { spawn } from 'node:child_process';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { AttachRequest, ExecRequest, StreamBackend, StreamIO, TerminalSize } from '../../stream/index.js';

export class HostBackend implements StreamBackend {
  readonly resizes: TerminalSize[] = [];
  readonly forwards: Array<{ podSandboxId: string; port: number }> = [];

  /** Runs cmd on the host; with tty, also reports each resize as "resize WxH\n" on stdout. */
  async exec(req: ExecRequest, io: StreamIO): Promise<{ exitCode: number }> {
    const child = spawn(req.cmd[0]!, req.cmd.slice(1), {
      stdio: [io.stdin ? 'pipe' : 'ignore', io.stdout ? 'pipe' : 'ignore', io.stderr ? 'pipe' : 'ignore'],
      signal: io.signal,
    });
    child.on('error', () => undefined);
    if (io.stdin && child.stdin) {
      child.stdin.on('error', () => undefined);
      io.stdin.pipe(child.stdin);
    }
    if (io.stdout && child.stdout) child.stdout.pipe(io.stdout, { end: false });
    if (io.stderr && child.stderr) child.stderr.pipe(io.stderr, { end: false });
    if (io.resize) {
      void (async () => {
        for await (const size of io.resize!) {
          this.resizes.push(size);
          io.stdout?.write(`resize ${size.width}x${size.height}\n`);
        }
      })();
    }
    return new Promise((resolve, reject) => {
      child.once('error', (err) => reject(new Error(`running ${req.cmd[0]}: ${err.message}`)));
      child.once('close', (code, signal) => resolve({ exitCode: code ?? (signal ? 128 + 9 : 255) }));
    });
  }

  attach(_req: AttachRequest, io: StreamIO): Promise<void> {
    io.stdout?.write('attached\n');
    return Promise.resolve();
  }

  /** Dials 127.0.0.1:port and copies both ways until both directions have ended. */
  portForward(podSandboxId: string, port: number, conn: Duplex, signal: AbortSignal): Promise<void> {
    this.forwards.push({ podSandboxId, port });
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      const onAbort = (): void => { sock.destroy(); };
      signal.addEventListener('abort', onAbort, { once: true });
      sock.once('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(new Error(`dialing 127.0.0.1:${port}: ${err.message}`));
      });
      sock.once('connect', () => {
        conn.pipe(sock);
        sock.pipe(conn);
        // Done once the pod side has closed and our side of conn is finished or torn down.
        let sockClosed = false;
        let connDone = false;
        const check = (): void => {
          if (!sockClosed || !connDone) return;
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        sock.once('close', () => { sockClosed = true; check(); });
        conn.once('finish', () => { connDone = true; check(); });
        conn.once('close', () => { connDone = true; sock.destroy(); check(); });
      });
    });
  }
}
