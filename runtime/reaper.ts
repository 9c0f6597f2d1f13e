/**
 * A child subreaper for runsc: `runsc create` leaves its sandbox and gofer
 * processes behind as orphans, and `runsc delete` waits until they are
 * reaped. Orphans go to the nearest subreaper ancestor, else to pid 1, which
 * on some hosts (this project's VMs among them) reaps only every ~2 s and so
 * made every container and pod teardown cost ~2 s. This small perl process
 * marks itself PR_SET_CHILD_SUBREAPER, launches the commands the daemon
 * hands it and reaps every process that lands on it at once. It outlives the
 * daemon while any of its sandboxes runs (a restarted daemon starts a new
 * one), and exits once it has no child left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../cri-api/logger.js';

// x86-64 syscall numbers and prctl options; the script only runs where that holds (see start()).
const SCRIPT = String.raw`
use strict; use warnings; use POSIX qw(:sys_wait_h :fcntl_h);
syscall(157, 36, 1) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\n";
$SIG{PIPE} = 'IGNORE';
$| = 1;
my %launched; my $buf = ''; my $open = 1;
while (1) {
  while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
    my $id = delete $launched{$pid};
    print "D $id $?\n" if defined $id;
  }
  last if !$open && waitpid(-1, WNOHANG) == -1;
  my $rin = ''; vec($rin, 0, 1) = 1 if $open;
  next unless select(my $rout = $rin, undef, undef, 0.02) > 0;
  my $n = sysread(STDIN, $buf, 65536, length $buf);
  if (!$n) { $open = 0; next; }
  while ($buf =~ s/^([^\n]*)\n//) {
    my ($id, $in, $out, $err, @argv) = split /\x1f/, $1;
    my $pid = fork();
    if (!defined $pid) { print "D $id 32512\n"; next; }
    if ($pid == 0) {
      # Read-write, as the daemon's own fds were: a sandbox holding its output FIFO O_RDWR never sees EPIPE.
      my @fds = (POSIX::open($in, O_RDONLY), POSIX::open($out, O_RDWR | O_APPEND), POSIX::open($err, O_RDWR | O_APPEND));
      for my $i (0 .. 2) { defined $fds[$i] && defined POSIX::dup2($fds[$i], $i) or POSIX::_exit(126); }
      exec { $argv[0] } @argv; POSIX::_exit(127);
    }
    $launched{$pid} = $id;
    print "S $id $pid\n";
  }
}
`;

export interface LaunchStdio {
  stdin: string;
  stdout: string;
  stderr: string;
}

export interface LaunchResult {
  exitCode: number | undefined;
  signal: number | undefined;
  timedOut: boolean;
}

interface Pending {
  pid?: number;
  resolve(r: LaunchResult): void;
  timer?: NodeJS.Timeout;
  timedOut: boolean;
}

const SEP = '\x1f';

export class Reaper {
  private readonly proc: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private alive = true;

  private constructor(proc: ChildProcess, logger: Logger) {
    this.proc = proc;
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (line) => {
      const [kind, id, value] = line.split(' ');
      const p = this.pending.get(Number(id));
      if (!p) return;
      if (kind === 'S') {
        p.pid = Number(value);
        return;
      }
      const status = Number(value);
      clearTimeout(p.timer);
      this.pending.delete(Number(id));
      const signal = status & 0x7f;
      p.resolve({ exitCode: signal === 0 ? status >> 8 : undefined, signal: signal === 0 ? undefined : signal, timedOut: p.timedOut });
    });
    proc.once('exit', (code, signal) => {
      this.alive = false;
      if (this.pending.size > 0) logger.error({ code, signal }, 'the runsc reaper exited with commands in flight');
      for (const p of this.pending.values()) p.resolve({ exitCode: undefined, signal: undefined, timedOut: p.timedOut });
      this.pending.clear();
    });
  }

  /** Starts the reaper; undefined (with a warning) where it cannot run, and runsc is then run directly. */
  static async start(logger: Logger): Promise<Reaper | undefined> {
    if (process.arch !== 'x64') return undefined;
    const proc = spawn('perl', ['-e', SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const failed = await new Promise<boolean>((resolve) => {
      proc.once('error', () => resolve(true));
      proc.once('exit', () => resolve(true));
      setTimeout(() => resolve(false), 200);
    });
    if (failed) {
      logger.warn({ stderr: stderr.trim() }, 'could not start the runsc reaper; sandbox teardown waits for pid 1 to reap');
      return undefined;
    }
    // Its stderr is not read once it runs: a reaper outliving the daemon must not hold the daemon's pipes.
    proc.stderr!.destroy();
    return new Reaper(proc, logger);
  }

  /**
   * Runs argv as the reaper's child. Stdio are paths the reaper opens itself
   * (a daemon fd is passed as /proc/<daemon pid>/fd/<n>, which reopens the
   * same file).
   */
  launch(argv: readonly string[], stdio: LaunchStdio, timeoutMs: number): Promise<LaunchResult> {
    if (!this.alive) return Promise.resolve({ exitCode: undefined, signal: undefined, timedOut: false });
    const id = ++this.seq;
    return new Promise((resolve) => {
      const p: Pending = { resolve, timedOut: false };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          p.timedOut = true;
          if (p.pid !== undefined) {
            try {
              process.kill(p.pid, 'SIGKILL');
            } catch {
              // Already gone: its exit report is on its way.
            }
          }
        }, timeoutMs);
      }
      this.pending.set(id, p);
      this.proc.stdin!.write([id, stdio.stdin, stdio.stdout, stdio.stderr, ...argv].join(SEP) + '\n');
    });
  }

  /** Stops taking commands; the reaper keeps reaping until its last child is gone. */
  close(): void {
    this.proc.stdin!.end();
    this.proc.stdout!.destroy();
    this.proc.unref();
  }
}
