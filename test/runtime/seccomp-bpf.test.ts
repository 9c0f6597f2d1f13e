import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUDIT_ARCH_X86_64, BPF, bpfHex, compileSeccomp, SECCOMP_RET, type BpfInstruction } from '../../runtime/seccomp/bpf.js';
import { runtimeDefaultSeccomp } from '../../runtime/seccomp/default-profile.js';
import { X86_64_SYSCALLS } from '../../runtime/seccomp/syscalls-x86-64.js';
import type { OciSeccomp } from '../../runtime/spec/oci-spec.js';

/** Runs a classic BPF program over struct seccomp_data, as the kernel does (only the opcodes the compiler emits). */
function runBpf(program: readonly BpfInstruction[], nr: number, args: readonly bigint[] = [], arch = AUDIT_ARCH_X86_64): number {
  const data = Buffer.alloc(64);
  data.writeUInt32LE(nr, 0);
  data.writeUInt32LE(arch, 4);
  args.forEach((a, i) => data.writeBigUInt64LE(a, 16 + 8 * i));
  let acc = 0;
  for (let pc = 0; pc < program.length; pc++) {
    const ins = program[pc]!;
    switch (ins.code) {
      case BPF.LD_W_ABS:
        acc = data.readUInt32LE(ins.k);
        break;
      case BPF.ALU_AND_K:
        acc = (acc & ins.k) >>> 0;
        break;
      case BPF.JEQ_K:
        pc += acc === ins.k >>> 0 ? ins.jt : ins.jf;
        break;
      case BPF.JGT_K:
        pc += acc > ins.k >>> 0 ? ins.jt : ins.jf;
        break;
      case BPF.JGE_K:
        pc += acc >= ins.k >>> 0 ? ins.jt : ins.jf;
        break;
      case BPF.RET_K:
        return ins.k >>> 0;
      default:
        throw new Error(`opcode ${ins.code} at ${pc}`);
    }
  }
  throw new Error('ran off the end of the program');
}

const NR = X86_64_SYSCALLS;
const ERRNO = (e: number): number => (SECCOMP_RET.ERRNO | e) >>> 0;
const compile = (p: OciSeccomp): BpfInstruction[] => compileSeccomp(p, 'test');

test('critest\'s chmod profile: the chmod family gets EPERM, the rest is allowed', () => {
  const prog = compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['chmod', 'fchmod', 'fchmodat', 'no_such_syscall'], action: 'SCMP_ACT_ERRNO' }] });
  for (const n of ['chmod', 'fchmod', 'fchmodat']) assert.equal(runBpf(prog, NR[n]!), ERRNO(1), n);
  for (const n of ['read', 'execve', 'chown']) assert.equal(runBpf(prog, NR[n]!), SECCOMP_RET.ALLOW, n);
});

test('default action, errnoRet, kill and trap actions, other architectures and x32 numbers', () => {
  const prog = compile({
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 38,
    syscalls: [
      { names: ['read'], action: 'SCMP_ACT_ALLOW' },
      { names: ['write'], action: 'SCMP_ACT_LOG' },
      { names: ['mount'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      { names: ['reboot'], action: 'SCMP_ACT_KILL' },
      { names: ['kexec_load'], action: 'SCMP_ACT_KILL_PROCESS' },
      { names: ['ptrace'], action: 'SCMP_ACT_TRAP' },
    ],
  });
  assert.equal(runBpf(prog, NR.read!), SECCOMP_RET.ALLOW);
  assert.equal(runBpf(prog, NR.write!), SECCOMP_RET.ALLOW);
  assert.equal(runBpf(prog, NR.mount!), ERRNO(13));
  assert.equal(runBpf(prog, NR.reboot!), SECCOMP_RET.KILL_THREAD);
  assert.equal(runBpf(prog, NR.kexec_load!), SECCOMP_RET.KILL_PROCESS);
  assert.equal(runBpf(prog, NR.ptrace!), SECCOMP_RET.TRAP);
  assert.equal(runBpf(prog, NR.open!), ERRNO(38));
  assert.equal(runBpf(prog, NR.read!, [], 0x40000003), ERRNO(38), 'i386 calls take the default');
  assert.equal(runBpf(prog, (NR.read! | 0x40000000) >>> 0), ERRNO(38), 'x32 calls take the default');
});

test('argument conditions compare all 64 bits; several conditions must all hold', () => {
  const rule = (op: string, value: number, valueTwo?: number): OciSeccomp => ({
    defaultAction: 'SCMP_ACT_ERRNO',
    syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value, valueTwo, op }] }],
  });
  const cases: [string, number, number | undefined, bigint, boolean][] = [
    ['SCMP_CMP_EQ', 8, undefined, 8n, true],
    ['SCMP_CMP_EQ', 8, undefined, 9n, false],
    ['SCMP_CMP_EQ', 8, undefined, (1n << 32n) | 8n, false],
    ['SCMP_CMP_NE', 8, undefined, 8n, false],
    ['SCMP_CMP_NE', 8, undefined, 7n, true],
    ['SCMP_CMP_NE', 8, undefined, (1n << 32n) | 8n, true],
    ['SCMP_CMP_LT', 2 ** 32 + 5, undefined, 2n ** 32n + 4n, true],
    ['SCMP_CMP_LT', 2 ** 32 + 5, undefined, 2n ** 32n + 5n, false],
    ['SCMP_CMP_LT', 2 ** 32 + 5, undefined, 0xffffffffn, true],
    ['SCMP_CMP_LT', 2 ** 32 + 5, undefined, 2n ** 33n, false],
    ['SCMP_CMP_LE', 10, undefined, 10n, true],
    ['SCMP_CMP_LE', 10, undefined, 11n, false],
    ['SCMP_CMP_GT', 10, undefined, 11n, true],
    ['SCMP_CMP_GT', 10, undefined, 10n, false],
    ['SCMP_CMP_GT', 10, undefined, 1n << 40n, true],
    ['SCMP_CMP_GE', 2 ** 32, undefined, 2n ** 32n, true],
    ['SCMP_CMP_GE', 2 ** 32, undefined, 0xffffffffn, false],
    ['SCMP_CMP_MASKED_EQ', 0x7e020000, 0, 0x11n, true],
    ['SCMP_CMP_MASKED_EQ', 0x7e020000, 0, 0x20000000n, false],
    ['SCMP_CMP_MASKED_EQ', 0xff, 0x11, 0x1311n, true],
  ];
  for (const [op, value, valueTwo, arg, allowed] of cases) {
    const got = runBpf(compile(rule(op, value, valueTwo)), NR.personality!, [0n, arg]);
    assert.equal(got, allowed ? SECCOMP_RET.ALLOW : ERRNO(1), `${op} ${value} (${valueTwo}) on ${arg}`);
  }
  const both = compile({
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      { names: ['socket'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 16, op: 'SCMP_CMP_EQ' }, { index: 2, value: 9, op: 'SCMP_CMP_EQ' }] },
      { names: ['socket'], action: 'SCMP_ACT_KILL', args: [{ index: 0, value: 17, op: 'SCMP_CMP_EQ' }] },
      { names: ['read'], action: 'SCMP_ACT_ERRNO' },
    ],
  });
  assert.equal(runBpf(both, NR.socket!, [16n, 3n, 9n]), ERRNO(1));
  assert.equal(runBpf(both, NR.socket!, [16n, 3n, 0n]), SECCOMP_RET.ALLOW, 'only one condition holds');
  assert.equal(runBpf(both, NR.socket!, [17n]), SECCOMP_RET.KILL_THREAD, 'the next rule of the same syscall');
  assert.equal(runBpf(both, NR.read!), ERRNO(1), 'rules after a conditional one see the syscall number again');
});

test('what the compiler cannot express is refused as INVALID_ARGUMENT', () => {
  const bad: [OciSeccomp, RegExp][] = [
    [{ defaultAction: 'SCMP_ACT_TRACE' }, /SCMP_ACT_TRACE is not supported/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_NOTIFY' }] }, /syscalls\[0\].*SCMP_ACT_NOTIFY/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_BOGUS' }] }] }, /SCMP_CMP_BOGUS is not supported/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }] }, /index 6/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: -1, op: 'SCMP_CMP_EQ' }] }] }, /value -1/],
    [{ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_AARCH64'] }, /does not cover SCMP_ARCH_X86_64/],
  ];
  for (const [profile, message] of bad) assert.throws(() => compile(profile), (err: { code?: number; message: string }) => err.code === 3 && message.test(err.message));
});

test('a refused profile value is quoted only when it is a name or a number, never as free text', () => {
  const secret = 'root:$y$j9T$secret-hash:19000:0:99999:7:::';
  const bad: OciSeccomp[] = [
    { defaultAction: secret },
    { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: secret }] },
    { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: secret }] }] },
    { defaultAction: 'SCMP_ACT_ALLOW', architectures: [secret] },
    { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: secret as unknown as number, value: 1, op: 'SCMP_CMP_EQ' }] }] },
  ];
  for (const profile of bad) {
    assert.throws(() => compile(profile), (err: { code?: number; message: string }) => {
      assert.equal(err.code, 3);
      assert.ok(!err.message.includes('secret'), err.message);
      assert.match(err.message, /a value of \d+ characters, not shown/);
      return true;
    });
  }
});

test('hex form: eight bytes per instruction, little endian', () => {
  assert.equal(bpfHex([{ code: BPF.RET_K, jt: 1, jf: 2, k: SECCOMP_RET.ALLOW }]), '060001020000ff7f');
  assert.equal(bpfHex([{ code: BPF.RET_K, jt: 0, jf: 0, k: SECCOMP_RET.KILL_PROCESS }]), '0600000000000080');
});

test('RuntimeDefault: ordinary syscalls allowed, host-reaching ones refused unless the capability is held', () => {
  const plain = compile(runtimeDefaultSeccomp(['CAP_CHOWN', 'CAP_SYS_CHROOT']));
  for (const n of ['read', 'write', 'openat', 'execve', 'mmap', 'futex', 'chmod', 'sethostname', 'chroot', 'getpid', 'wait4', 'socket']) assert.equal(runBpf(plain, NR[n]!), SECCOMP_RET.ALLOW, n);
  for (const n of ['mount', 'umount2', 'unshare', 'setns', 'ptrace', 'reboot', 'init_module', 'keyctl', 'bpf', 'settimeofday', 'kexec_load']) assert.equal(runBpf(plain, NR[n]!), ERRNO(1), n);
  assert.equal(runBpf(plain, NR.clone!, [0x3d0f00n]), SECCOMP_RET.ALLOW, 'fork-like clone');
  assert.equal(runBpf(plain, NR.clone!, [0x3d0f00n | 0x20000000n]), ERRNO(1), 'clone with CLONE_NEWUTS');
  assert.equal(runBpf(plain, NR.clone3!), ERRNO(38), 'clone3 falls back to clone');
  assert.equal(runBpf(plain, NR.personality!, [0xffffffffn]), SECCOMP_RET.ALLOW);
  assert.equal(runBpf(plain, NR.personality!, [0x400000n]), ERRNO(1));
  const admin = compile(runtimeDefaultSeccomp(['CAP_SYS_ADMIN', 'CAP_SYS_PTRACE']));
  for (const n of ['mount', 'unshare', 'setns', 'ptrace', 'clone3']) assert.equal(runBpf(admin, NR[n]!), SECCOMP_RET.ALLOW, n);
  assert.equal(runBpf(admin, NR.clone!, [0x20000000n]), SECCOMP_RET.ALLOW);
  assert.equal(runBpf(admin, NR.reboot!), ERRNO(1));
});
