/**
 * kubelet's relist on grpc-go (bench/relist-client/main.go), one process per
 * CRI socket, driven over stdin/stdout. The relist is timed inside the Go
 * process, so neither the pipe nor Node's scheduling is part of a sample.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { buildGrpcGoCommand, type GoBuild } from '../test/helpers/go-cri-client.js';

const SOURCE_DIR = fileURLToPath(new URL('../../bench/relist-client', import.meta.url));

export interface RelistResult {
  /** Containers seen by ListContainers (each got a ContainerStatus). */
  containers: number;
  /** The whole relist as the Go client timed it. */
  ms: number;
}

/** Builds the client once per bench run (seconds with Go's build cache warm). */
export function buildRelistClient(): Promise<GoBuild> {
  return buildGrpcGoCommand(SOURCE_DIR, 'relist-client');
}

export class RelistClient {
  private readonly proc: ChildProcess;
  private waiting: { resolve(r: RelistResult): void; reject(e: Error): void } | undefined;
  private stderr = '';
  private gone: string | undefined;

  constructor(binary: string, socket: string, timeoutMs: number) {
    this.proc = spawn(binary, ['-socket', socket, '-timeout', `${timeoutMs}ms`], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.proc.stdin!.on('error', () => undefined);
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const w = this.waiting;
      this.waiting = undefined;
      const a = JSON.parse(line) as RelistResult & { error?: string };
      if (a.error !== undefined) w?.reject(new Error(`relist-client: ${a.error}`));
      else w?.resolve({ containers: a.containers, ms: a.ms });
    });
    const fail = (why: string): void => {
      this.gone = `relist-client ${why}: ${this.stderr.trim()}`;
      this.waiting?.reject(new Error(this.gone));
      this.waiting = undefined;
    };
    this.proc.once('error', (err) => fail(`could not start (${err.message})`));
    this.proc.once('exit', (code, signal) => fail(`exited (${signal ?? code})`));
  }

  /** One relist; one at a time, as kubelet's PLEG. */
  relist(): Promise<RelistResult> {
    if (this.gone) return Promise.reject(new Error(this.gone));
    if (this.waiting) return Promise.reject(new Error('relist-client: a relist is already running'));
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.proc.stdin!.write('relist\n');
    });
  }

  close(): void {
    this.proc.stdin!.end();
    this.proc.kill();
  }
}
