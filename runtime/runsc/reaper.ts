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
 *
 * It also holds the output FIFOs of containers (so what a container wrote
 * just before exiting while the daemon was down is still there for the next
 * one) and the terminals of tty containers: Node cannot receive the
 * console's file descriptor (SCM_RIGHTS) that runsc sends, and a holder that
 * outlives the daemon keeps the container's terminal alive across restarts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { runCaptured, stripFinalNewline, type CaptureRequest, type CaptureResult, type Launcher } from '../../common/index.js';
import type { Logger } from '../../cri-api/logger.js';

// x86-64 syscall numbers, prctl options and ioctls; the script only runs where that holds (see start()).
const SCRIPT = String.raw`
use strict; use warnings; use POSIX qw(:sys_wait_h :fcntl_h :errno_h);
use Socket qw(AF_UNIX SOCK_STREAM pack_sockaddr_un);
syscall(157, 36, 1) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!\n";
$SIG{PIPE} = 'IGNORE';
# A handler (even empty) makes SIGCHLD interrupt select, so an exit is reported at once, not at the next poll.
$SIG{CHLD} = sub {};
$| = 1;
my %launched; my %term; my %held; my $buf = ''; my $open = 1; my $checked = 0;
my $CAP = 1 << 20;

# recvmsg(2) by number: core perl has none, and runsc hands the console over SCM_RIGHTS.
sub recv_fd {
  my ($conn) = @_;
  my $data = "\0" x 64; my $ctl = "\0" x 64;
  my $iov = pack('QQ', unpack('Q', pack('p', $data)), length $data);
  my $msg = pack('QLx4QQQQlx4', 0, 0, unpack('Q', pack('p', $iov)), 1, unpack('Q', pack('p', $ctl)), length $ctl, 0);
  # MSG_CMSG_CLOEXEC: the runsc processes launched later must not inherit the console.
  return undef if syscall(47, fileno($conn), $msg, 0x40000000) < 0;
  my (undef, $level, $type, $fd) = unpack('Qlll', $ctl);
  return ($level == 1 && $type == 1) ? $fd : undef;
}

sub term_open {
  my ($id, $sock, $out, $in, $ctl) = @_;
  my %t = (ob => '', ib => '', cb => '', sock => $sock);
  unlink $sock;
  my $l;
  socket($l, AF_UNIX, SOCK_STREAM, 0) && bind($l, pack_sockaddr_un($sock)) && listen($l, 1) or return "console socket $sock: $!";
  # Read-write, as a sandbox holds its FIFOs: the pipes live while the daemon is away.
  sysopen(my $o, $out, O_RDWR | O_NONBLOCK) or return "open $out: $!";
  sysopen(my $c, $ctl, O_RDWR | O_NONBLOCK) or return "open $ctl: $!";
  if ($in ne '') { sysopen(my $i, $in, O_RDWR | O_NONBLOCK) or return "open $in: $!"; $t{i} = $i; }
  @t{qw(l o c)} = ($l, $o, $c);
  $term{$id} = \%t;
  return '';
}

# A terminal made here, for an exec: runsc exec takes its own stdio as the terminal, so its console
# cannot come over a socket. Relayed as term_open's; the answer is the slave's path.
sub term_pty {
  my ($id, $out, $in, $ctl) = @_;
  my %t = (ob => '', ib => '', cb => '');
  sysopen(my $m, '/dev/ptmx', O_RDWR | O_NOCTTY | O_NONBLOCK) or return (undef, "open /dev/ptmx: $!");
  # TIOCSPTLCK (unlock the slave), then TIOCGPTN (its number).
  my ($unlock, $n) = (pack('i', 0), pack('i', 0));
  ioctl($m, 0x40045431, $unlock) && ioctl($m, 0x80045430, $n) or return (undef, "pty: $!");
  sysopen(my $o, $out, O_RDWR | O_NONBLOCK) or return (undef, "open $out: $!");
  sysopen(my $c, $ctl, O_RDWR | O_NONBLOCK) or return (undef, "open $ctl: $!");
  if ($in ne '') { sysopen(my $i, $in, O_RDWR | O_NONBLOCK) or return (undef, "open $in: $!"); $t{i} = $i; }
  @t{qw(m o c)} = ($m, $o, $c);
  $term{$id} = \%t;
  return ('/dev/pts/' . unpack('i', $n), '');
}

sub term_close {
  my ($id) = @_;
  my $t = delete $term{$id} or return;
  unlink $t->{sock} if $t->{l};
  close $_ for grep { defined } @$t{qw(l m o i c)};
}

# A FIFO made here saves a mkfifo(1) per stream; an output FIFO is held and grown at once.
sub make_fifo {
  my ($bytes, $p) = @_;
  -p $p or POSIX::mkfifo($p, 0600) or return undef;
  return 0 unless $bytes;
  my $h;
  sysopen($h, $p, O_RDONLY | O_NONBLOCK) or return undef;
  $held{$p} //= $h;
  my $size = fcntl($h, 1031, int($bytes));
  return defined $size ? $size + 0 : 0;
}

# The netns workaround (gvisor.md "Kernel >= 6.x") in the child itself, with
# no unshare/sh/nsenter/mount processes: a private mount namespace in which
# /proc/sys/net/core, as seen from the pod's netns, is an empty tmpfs.
sub mask_net_core {
  my ($netns) = @_;
  # syscall() hands strings over as pointers and refuses read-only literals: copies.
  my ($none, $root, $core, $tmpfs) = ('none', '/', '/proc/sys/net/core', 'tmpfs');
  # unshare(CLONE_NEWNS), then mount(2) "/" MS_REC|MS_PRIVATE: nothing leaks to the host's mounts.
  syscall(272, 0x20000) == 0 or return 0;
  syscall(165, $none, $root, 0, 0x44000, 0) == 0 or return 0;
  open(my $own, '<', '/proc/self/ns/net') or return 0;
  open(my $pod, '<', $netns) or return 0;
  # setns(2) into the pod's netns (sysctl directories are per netns), mount, and back.
  syscall(308, fileno($pod), 0x40000000) == 0 or return 0;
  my $ok = syscall(165, $none, $core, $tmpfs, 0, 0) == 0;
  syscall(308, fileno($own), 0x40000000) == 0 or return 0;
  return $ok;
}

# Forks; the child runs $setup, which ends in exec or _exit.
sub start_child {
  my ($id, $setup) = @_;
  my $pid = fork();
  if (!defined $pid) { print "D $id 32512\n"; return; }
  if ($pid == 0) { $setup->(); POSIX::_exit(127); }
  $launched{$pid} = $id;
  print "S $id $pid\n";
}

sub winsize { my ($t) = @_; ioctl($t->{m}, 0x5414, $t->{ws}) if $t->{m} && $t->{ws}; }

sub readable { my ($v, $fh) = @_; return $fh && vec($v, fileno($fh), 1); }

sub pump {
  my ($id, $r, $w) = @_;
  my $t = $term{$id};
  if ($t->{l}) {
    return unless readable($r, $t->{l});
    accept(my $conn, $t->{l}) or return;
    my $fd = recv_fd($conn);
    close $conn; close delete $t->{l}; unlink $t->{sock};
    return term_close($id) unless defined $fd && open(my $m, '+<&=', $fd);
    fcntl($m, F_SETFL, fcntl($m, F_GETFL, 0) | O_NONBLOCK);
    $t->{m} = $m;
    winsize($t);
    return;
  }
  if (readable($r, $t->{m})) {
    my $got = sysread($t->{m}, $t->{ob}, 65536, length $t->{ob});
    # EIO: every slave end is closed, the container is gone.
    if (defined $got ? $got == 0 : ($! != EAGAIN && $! != EINTR)) { close delete $t->{m}; }
  }
  if (length $t->{ob} && readable($w, $t->{o})) {
    my $n = syswrite($t->{o}, $t->{ob});
    substr($t->{ob}, 0, $n, '') if $n;
  }
  sysread($t->{i}, $t->{ib}, 65536, length $t->{ib}) if readable($r, $t->{i});
  if (length $t->{ib} && readable($w, $t->{m})) {
    my $n = syswrite($t->{m}, $t->{ib});
    substr($t->{ib}, 0, $n, '') if $n;
  }
  if (readable($r, $t->{c})) {
    sysread($t->{c}, $t->{cb}, 4096, length $t->{cb});
    while ($t->{cb} =~ s/^([^\n]*)\n//) {
      my @w = split / /, $1;
      if ($w[0] eq 'R' && @w == 3) { $t->{ws} = pack('S4', $w[2], $w[1], 0, 0); winsize($t); }
      # Stdin closed: a terminal's end of input is its EOF character.
      elsif ($w[0] eq 'E') { $t->{ib} .= "\x04"; }
    }
  }
  term_close($id) unless $t->{m} || length $t->{ob};
}

while (1) {
  while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
    my $id = delete $launched{$pid};
    print "D $id $?\n" if defined $id;
  }
  if (%held && time() != $checked) {
    $checked = time();
    for my $p (keys %held) { my @st = stat($held{$p}); delete $held{$p} if !@st || $st[3] == 0; }
  }
  last if !$open && !%term && !%held && waitpid(-1, WNOHANG) == -1;
  my ($rin, $win) = ('', '');
  vec($rin, 0, 1) = 1 if $open;
  for my $t (values %term) {
    if ($t->{l}) { vec($rin, fileno($t->{l}), 1) = 1; next; }
    vec($rin, fileno($t->{c}), 1) = 1;
    vec($win, fileno($t->{o}), 1) = 1 if length $t->{ob};
    vec($rin, fileno($t->{i}), 1) = 1 if $t->{i} && length($t->{ib}) < $CAP;
    next unless $t->{m};
    vec($rin, fileno($t->{m}), 1) = 1 if length($t->{ob}) < $CAP;
    vec($win, fileno($t->{m}), 1) = 1 if length $t->{ib};
  }
  next unless select(my $rout = $rin, my $wout = $win, undef, 0.02) > 0;
  pump($_, $rout, $wout) for grep { $term{$_} } keys %term;
  next unless vec($rout, 0, 1);
  my $n = sysread(STDIN, $buf, 65536, length $buf);
  if (!$n) { $open = 0; next; }
  while ($buf =~ s/^([^\n]*)\n//) {
    my @f = split /\x1f/, $1, -1;
    if ($f[0] eq 'T') { my $err = term_open(@f[1 .. 5]); print $err eq '' ? "L $f[1]\n" : "F $f[1] $err\n"; next; }
    if ($f[0] eq 'U') { term_close($f[1]); next; }
    if ($f[0] eq 'P') { my ($tty, $err) = term_pty(@f[1 .. 4]); print defined $tty ? "M $f[1] $tty\n" : "F $f[1] $err\n"; next; }
    if ($f[0] eq 'Y') {
      # A command on a terminal term_pty made: its session's controlling terminal, so that the
      # terminal's own signals (^C) reach it, as runsc exec forwards them into the sandbox.
      my (undef, $id, $tty, @argv) = @f;
      my $fd = POSIX::open($tty, O_RDWR | O_NOCTTY);
      start_child($id, sub {
        defined $fd && POSIX::setsid() or POSIX::_exit(126);
        for my $i (0 .. 2) { defined POSIX::dup2($fd, $i) or POSIX::_exit(126); }
        POSIX::close($fd) if $fd > 2;
        ioctl(STDIN, 0x540E, 0) or POSIX::_exit(126);
        exec { $argv[0] } @argv; POSIX::_exit(127);
      });
      POSIX::close($fd) if defined $fd;
      next;
    }
    if ($f[0] eq 'M') { my $size = make_fifo(@f[2, 3]); print defined $size ? "M $f[1] $size\n" : "F $f[1] $!\n"; next; }
    # A pipe's buffer dies with its last open fd: held until the FIFO is unlinked.
    if ($f[0] eq 'H') { for my $p (@f[1 .. $#f]) { next if $held{$p}; my $h; $held{$p} = $h if sysopen($h, $p, O_RDONLY | O_NONBLOCK); } next; }
    if ($f[0] eq 'C') {
      # A short tool with its output captured: env on top of ours, stdout and stderr into files made here.
      my (undef, $id, $in, $out, $err, $env, @argv) = @f;
      start_child($id, sub {
        for my $kv (split /\x1e/, $env) { my ($k, $v) = split /=/, $kv, 2; $ENV{$k} = $v; }
        my @fds = (POSIX::open($in, O_RDONLY), POSIX::open($out, O_WRONLY | O_CREAT | O_TRUNC, 0600), POSIX::open($err, O_WRONLY | O_CREAT | O_TRUNC, 0600));
        for my $i (0 .. 2) { defined $fds[$i] && defined POSIX::dup2($fds[$i], $i) or POSIX::_exit(126); }
        POSIX::close($_) for grep { $_ > 2 } @fds;
        exec { $argv[0] } @argv; print STDERR "exec $argv[0]: $!\n"; POSIX::_exit(127);
      });
      next;
    }
    my ($id, $in, $out, $err, $mask, @argv) = @f;
    # Stdio opens here, before the fork, so "S" means the child holds it: the daemon may then close
    # its own end of a stdin FIFO without leaving the child blocked in open(2) or the input lost.
    # Stdin non-blocking, as a FIFO with no writer must not stall this loop (the child clears it);
    # outputs read-write, as the daemon's own fds were: a sandbox holding its output FIFO O_RDWR never sees EPIPE.
    my @fds = (POSIX::open($in, O_RDONLY | O_NONBLOCK), POSIX::open($out, O_RDWR | O_APPEND), POSIX::open($err, O_RDWR | O_APPEND));
    start_child($id, sub {
      POSIX::_exit(125) if $mask ne '' && !mask_net_core($mask);
      for my $i (0 .. 2) { defined $fds[$i] && defined POSIX::dup2($fds[$i], $i) or POSIX::_exit(126); }
      fcntl(STDIN, F_SETFL, fcntl(STDIN, F_GETFL, 0) & ~O_NONBLOCK) or POSIX::_exit(126);
      POSIX::close($_) for grep { defined && $_ > 2 } @fds;
      exec { $argv[0] } @argv; POSIX::_exit(127);
    });
    POSIX::close($_) for grep { defined } @fds;
  }
}
`;

export interface LaunchStdio {
  stdin: string;
  stdout: string;
  stderr: string;
}

/** Exit status of a launch whose netns workaround failed before the command ran. */
export const MASK_FAILED_EXIT = 125;

/**
 * Where a terminal's bytes go. The reaper, not the daemon, holds the console
 * master runsc sends to `consoleSocket` (so a tty container keeps its
 * terminal while the daemon restarts) and relays it: master output into the
 * `stdout` FIFO, the `stdin` FIFO into the master, and control lines from
 * the `control` FIFO: "R <cols> <rows>" resizes, "E" sends end-of-input.
 */
export interface TerminalFiles {
  consoleSocket: string;
  stdout: string;
  stdin?: string;
  control: string;
}

export interface LaunchResult {
  exitCode: number | undefined;
  signal: number | undefined;
  timedOut: boolean;
  /** Killed because the launch's abort signal fired. */
  cancelled: boolean;
}

interface Pending {
  pid?: number;
  resolve(r: LaunchResult): void;
  /** Told once the child runs with its stdio open. */
  started?: () => void;
  timer?: NodeJS.Timeout;
  timedOut: boolean;
  cancelled: boolean;
  /** Removes the abort listener. */
  detach?: () => void;
}

const SEP = '\x1f';
const ENV_SEP = '\x1e';

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone: its exit report is on its way.
  }
}

export class Reaper {
  private readonly proc: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  /** Commands awaiting the reaper's answer ("L"/"M" or "F <error>"), by key. */
  private readonly answers = new Map<string, (error: string | undefined, value: string) => void>();
  private seq = 0;
  private alive = true;
  private closed = false;

  private constructor(proc: ChildProcess, logger: Logger) {
    this.proc = proc;
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (line) => {
      const [kind, id, value] = line.split(' ');
      if (kind === 'L' || kind === 'M' || kind === 'F') {
        const answer = this.answers.get(id!);
        this.answers.delete(id!);
        answer?.(kind === 'F' ? line.slice(line.indexOf(' ', 2) + 1) : undefined, value ?? '');
        return;
      }
      const p = this.pending.get(Number(id));
      if (!p) return;
      if (kind === 'S') {
        p.pid = Number(value);
        p.started?.();
        // Its timeout passed (or its signal aborted) before the reaper said it started.
        if (p.timedOut || p.cancelled) killPid(p.pid);
        return;
      }
      const status = Number(value);
      clearTimeout(p.timer);
      p.detach?.();
      this.pending.delete(Number(id));
      const signal = status & 0x7f;
      p.resolve({ exitCode: signal === 0 ? status >> 8 : undefined, signal: signal === 0 ? undefined : signal, timedOut: p.timedOut, cancelled: p.cancelled });
    });
    proc.once('exit', (code, signal) => {
      this.alive = false;
      if (!this.closed) logger.error({ code, signal, inFlight: this.pending.size }, 'the runsc reaper died: runsc create/start and short tools now run directly, teardown waits for pid 1 to reap, and new containers get no terminal');
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.detach?.();
        p.resolve({ exitCode: undefined, signal: undefined, timedOut: p.timedOut, cancelled: p.cancelled });
      }
      this.pending.clear();
      for (const answer of this.answers.values()) answer('the reaper exited', '');
      this.answers.clear();
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
   * same file). With `maskNetCoreIn` (a netns path) the command runs in a
   * private mount namespace where that netns's /proc/sys/net/core is an
   * empty tmpfs (gvisor.md "Kernel >= 6.x"); if that cannot be set up it
   * does not run and exits MASK_FAILED_EXIT. `signal` SIGKILLs it;
   * `started` is called once it runs with its stdio open (the reaper opens
   * it before forking).
   */
  launch(argv: readonly string[], stdio: LaunchStdio, opts: { timeoutMs: number; maskNetCoreIn?: string; signal?: AbortSignal; started?: () => void }): Promise<LaunchResult> {
    return this.start((id) => [id, stdio.stdin, stdio.stdout, stdio.stderr, opts.maskNetCoreIn ?? '', ...argv], opts.timeoutMs, opts.signal, opts.started);
  }

  /**
   * Runs argv as the reaper's child on the terminal `tty` (a slave openPty
   * made) as its stdio and controlling terminal, in a session of its own.
   */
  launchOnTerminal(argv: readonly string[], tty: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<LaunchResult> {
    return this.start((id) => ['Y', id, tty, ...argv], opts.timeoutMs, opts.signal);
  }

  /**
   * Runs a short tool as the reaper's child with `env` set on top of the
   * reaper's environment (the daemon's): stdin from a file, stdout and
   * stderr into files the reaper creates (truncating). No field may hold a
   * newline, \x1e or \x1f, nor an env name "=" (see ReaperLauncher).
   */
  launchCapture(argv: readonly string[], files: LaunchStdio, env: Readonly<Record<string, string>>, timeoutMs: number, signal?: AbortSignal): Promise<LaunchResult> {
    const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(ENV_SEP);
    return this.start((id) => ['C', id, files.stdin, files.stdout, files.stderr, vars, ...argv], timeoutMs, signal);
  }

  private start(fields: (id: number) => Array<string | number>, timeoutMs: number, signal?: AbortSignal, started?: () => void): Promise<LaunchResult> {
    if (!this.alive || signal?.aborted) return Promise.resolve({ exitCode: undefined, signal: undefined, timedOut: false, cancelled: signal?.aborted === true });
    const id = ++this.seq;
    return new Promise((resolve) => {
      const p: Pending = { resolve, started, timedOut: false, cancelled: false };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          p.timedOut = true;
          if (p.pid !== undefined) killPid(p.pid);
        }, timeoutMs);
      }
      if (signal) {
        const onAbort = (): void => {
          p.cancelled = true;
          if (p.pid !== undefined) killPid(p.pid);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        p.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.pending.set(id, p);
      this.proc.stdin!.write(fields(id).join(SEP) + '\n');
    });
  }

  /**
   * Has the reaper listen on `files.consoleSocket` for the console runsc
   * sends during `create` of a container with a terminal, and relay it from
   * then on (see TerminalFiles) until the container's last slave end closes.
   * Resolves once it listens.
   */
  openTerminal(key: string, files: TerminalFiles): Promise<void> {
    if (!this.alive) return Promise.reject(new Error('the runsc reaper is gone'));
    if (this.answers.has(key)) return Promise.reject(new Error(`terminal ${key} is already being opened`));
    return this.ask(key, ['T', key, files.consoleSocket, files.stdout, files.stdin ?? '', files.control]).then(() => undefined);
  }

  /**
   * Has the reaper make a pseudo-terminal and relay it as openTerminal does
   * a console (`files`, without the socket), until its last slave end
   * closes. Resolves to the slave's path, for launchOnTerminal.
   */
  openPty(key: string, files: Omit<TerminalFiles, 'consoleSocket'>): Promise<string> {
    if (!this.alive) return Promise.reject(new Error('the runsc reaper is gone'));
    if (this.answers.has(key)) return Promise.reject(new Error(`terminal ${key} is already being opened`));
    return this.ask(key, ['P', key, files.stdout, files.stdin ?? '', files.control]);
  }

  /**
   * Makes a FIFO (an existing one is kept) without spawning mkfifo(1).
   * With `outputBytes`, the reaper also holds a reading end (as
   * holdFifos) and grows the pipe to that many bytes (F_SETPIPE_SZ, which
   * Node cannot call); resolves to the size it got, 0 when it could not grow.
   */
  async makeFifo(path: string, outputBytes = 0): Promise<number> {
    if (!this.running) throw new Error('the runsc reaper is gone');
    const key = `fifo-${++this.seq}`;
    return Number(await this.ask(key, ['M', key, String(outputBytes), path]));
  }

  private ask(key: string, fields: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      this.answers.set(key, (error, value) => (error === undefined ? resolve(value) : reject(new Error(error))));
      this.proc.stdin!.write(fields.join(SEP) + '\n');
    });
  }

  /**
   * Keeps a reading end of each output FIFO open until the FIFO is unlinked
   * (the container removed). A pipe's contents vanish with its last open
   * descriptor: without this, what a container wrote before exiting while
   * the daemon was down would be gone when a new daemon reopens the FIFO.
   * The reaper never reads from them, so nothing is taken from the daemon.
   */
  holdFifos(paths: readonly string[]): void {
    if (this.running && paths.length > 0) this.proc.stdin!.write(['H', ...paths].join(SEP) + '\n');
  }

  /** Drops a terminal (listening or relaying): for a container that failed to be created. */
  closeTerminal(key: string): void {
    if (this.alive) this.proc.stdin!.write(['U', key].join(SEP) + '\n');
  }

  /** False once the perl process is gone (or closed): callers then run runsc directly. */
  get running(): boolean {
    return this.alive && !this.closed;
  }

  /** Stops taking commands; the reaper keeps reaping until its last child is gone (and relaying until its last terminal closes). */
  close(): void {
    this.closed = true;
    this.proc.stdin!.end();
    this.proc.stdout!.destroy();
    this.proc.unref();
  }
}

/** What the line protocol cannot carry in a field. */
const UNSENDABLE = /[\n\x1e\x1f]/;

/** Whether the line protocol can carry these fields (launch's argv and paths). */
export function sendable(fields: readonly string[]): boolean {
  return !fields.some((f) => UNSENDABLE.test(f));
}

/**
 * The reaper as the Launcher of short tools (common/launcher.ts): forking
 * from the small perl process spares the daemon's event loop the fork of
 * its own large address space. Stdin and output go through files in `dir`,
 * removed after each call. A call the protocol cannot carry goes to execa.
 */
export class ReaperLauncher implements Launcher {
  private seq = 0;

  private constructor(
    private readonly reaper: Reaper,
    private readonly dir: string,
  ) {}

  /** Empties `dir` (files of an earlier daemon) and makes it. */
  static async open(reaper: Reaper, dir: string): Promise<ReaperLauncher> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new ReaperLauncher(reaper, dir);
  }

  get available(): boolean {
    return this.reaper.running;
  }

  async run(req: CaptureRequest): Promise<CaptureResult> {
    const env = req.env ?? {};
    const fields = [req.file, ...req.args, ...Object.keys(env), ...Object.values(env)];
    if (!sendable(fields) || Object.keys(env).some((k) => k.includes('='))) return runCaptured(req);
    const base = join(this.dir, `${process.pid}.${++this.seq}`);
    const files = { stdin: req.input === undefined ? '/dev/null' : `${base}.in`, stdout: `${base}.out`, stderr: `${base}.err` };
    try {
      if (req.input !== undefined) await writeFile(files.stdin, req.input, { mode: 0o600 });
      const r = await this.reaper.launchCapture([req.file, ...req.args], files, env, req.timeoutMs, req.signal);
      const [stdout, stderr] = await Promise.all([readFile(files.stdout, 'utf8').catch(() => ''), readFile(files.stderr, 'utf8').catch(() => '')]);
      const notRun = r.exitCode === undefined && r.signal === undefined && !r.timedOut && !r.cancelled ? 'the runsc reaper exited before it finished' : undefined;
      return { exitCode: r.exitCode, timedOut: r.timedOut, cancelled: r.cancelled, notRun, stdout: stripFinalNewline(stdout), stderr: stripFinalNewline(stderr) };
    } finally {
      await Promise.all([files.stdout, files.stderr, ...(req.input === undefined ? [] : [files.stdin])].map((f) => rm(f, { force: true })));
    }
  }
}
