/** Our daemon, started from bin/gvisor-cri with its own dirs, bench CNI conf dir and bench bridge. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_FLAGS } from '../daemon/install.js';
import type { CriBackend } from './contender-cri.js';
import { waitForSocket } from './cri-client.js';
import { benchConflist, type BenchEnv } from './env.js';
import { helpersBelow, memoryOf, processTable, sandboxProcessesOf, terminate, type MemoryFigure } from './procs.js';

const BIN = fileURLToPath(new URL('../../bin/gvisor-cri', import.meta.url));

export class GvisorCriBackend implements CriBackend {
  readonly socket: string;
  readonly logDir: string;
  readonly extraImages: readonly string[] = [];
  private readonly dir: string;
  private proc: ChildProcess | undefined;
  private started = false;

  constructor(private readonly env: BenchEnv, private readonly index: number) {
    this.dir = join(env.dir, 'gvcri');
    this.socket = join(this.dir, 'run', 'cri.sock');
    this.logDir = join(this.dir, 'pod-logs');
  }

  /** The daemon's log file (its pino output). */
  get logFile(): string {
    return join(this.dir, 'daemon.log');
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const cni = join(this.dir, 'cni');
    await mkdir(cni, { recursive: true });
    await mkdir(this.logDir, { recursive: true });
    await writeFile(join(cni, '10-bench.conflist'), benchConflist(this.env.pid, 'g', this.index, join(this.dir, 'ipam'), true));
    await writeFile(join(this.dir, 'config.toml'), '# bench daemon: everything comes from flags\n');
    const log = await open(this.logFile, 'a');
    try {
      this.proc = spawn(process.execPath, [
        ...DAEMON_NODE_FLAGS,
        BIN,
        '--config', join(this.dir, 'config.toml'),
        '--socket', this.socket,
        '--state-dir', join(this.dir, 'state'),
        '--run-dir', join(this.dir, 'run'),
        '--cni-conf-dir', cni,
        '--default-network=false',
        // The audit log is part of the daemon's cost, but it belongs in the bench dir, not /var/log.
        '--audit-log', join(this.dir, 'audit.log'),
        '--log-level', 'info',
      ], { stdio: ['ignore', log.fd, log.fd] });
    } finally {
      await log.close();
    }
    const proc = this.proc;
    await waitForSocket(this.socket, 60_000, () => proc.exitCode === null && proc.signalCode === null, `gvisor-cri (log: ${this.logFile})`);
  }

  get runscRoot(): string {
    return join(this.dir, 'run', 'runsc');
  }

  async daemonMemory(): Promise<MemoryFigure> {
    const table = await processTable();
    // The node process and its helpers (the perl helper and what it launches), not the sandboxes.
    const own = this.proc?.pid ? helpersBelow(table, [this.proc.pid]) : [];
    return memoryOf(own);
  }

  async sandboxMemory(): Promise<MemoryFigure> {
    return memoryOf(sandboxProcessesOf(await processTable(), this.runscRoot));
  }

  async stop(): Promise<void> {
    const pid = this.proc?.pid;
    if (pid !== undefined) await terminate(pid, 10_000);
    this.proc = undefined;
  }
}
