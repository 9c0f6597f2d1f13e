/**
 * Compiles an OCI seccomp profile into a classic BPF program for x86-64, the
 * form seccomp(SECCOMP_SET_MODE_FILTER) takes. runsc applies a container's
 * `linux.seccomp` to its first process only; processes started by `runsc
 * exec` get this program installed by the exec helper (seccomp-helper.ts).
 *
 * Semantics follow libseccomp as runc uses it: rules are tried in profile
 * order, the first whose syscall and argument conditions all match decides,
 * otherwise the default action. Unknown syscall names are skipped (profiles
 * list names of other architectures). Refused with INVALID_ARGUMENT rather
 * than mis-compiled: SCMP_ACT_TRACE / SCMP_ACT_NOTIFY, unknown comparison
 * operators, argument values that are not integers in [0, 2^64).
 */
import { invalidArgument } from '../../cri-api/errors.js';
import type { OciSeccomp } from '../spec/oci-spec.js';
import { X86_64_SYSCALLS } from './syscalls-x86-64.js';

/** One classic BPF instruction (struct sock_filter). */
export interface BpfInstruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export const BPF = {
  LD_W_ABS: 0x20,
  ALU_AND_K: 0x54,
  JEQ_K: 0x15,
  JGT_K: 0x25,
  JGE_K: 0x35,
  RET_K: 0x06,
} as const;

export const AUDIT_ARCH_X86_64 = 0xc000003e;
/** x32 syscalls carry this bit on x86-64; profiles name none of them. */
const X32_SYSCALL_BIT = 0x40000000;
/** BPF_MAXINSNS of the kernel. */
const MAX_INSTRUCTIONS = 4096;

export const SECCOMP_RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  ALLOW: 0x7fff0000,
} as const;

const EPERM = 1;

/** struct seccomp_data offsets: nr, arch, instruction_pointer, args[6] (u64 each, little endian). */
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const argLow = (i: number): number => 16 + 8 * i;
const argHigh = (i: number): number => 20 + 8 * i;

/**
 * A profile value as an error may quote it: names and numbers as they are,
 * anything else only by its size, so that a file that is not a profile
 * (a Localhost path may name any host file) never reaches the client.
 */
function shown(v: unknown): string {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'string' && /^[A-Za-z0-9_]{1,40}$/.test(v)) return v;
  return typeof v === 'string' ? `(a value of ${v.length} characters, not shown)` : `(a ${typeof v}, not shown)`;
}

function actionValue(action: string, errnoRet: number | undefined, where: string): number {
  switch (action) {
    case 'SCMP_ACT_ALLOW':
    // gVisor's sentry has no audit log to write to: logging means allowing.
    case 'SCMP_ACT_LOG':
      return SECCOMP_RET.ALLOW;
    case 'SCMP_ACT_ERRNO': {
      const errno = errnoRet ?? EPERM;
      if (!Number.isInteger(errno) || errno < 0 || errno > 0xffff) throw invalidArgument(`${where}: errnoRet ${shown(errno)} is not an errno number`);
      return SECCOMP_RET.ERRNO | errno;
    }
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return SECCOMP_RET.KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return SECCOMP_RET.KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return SECCOMP_RET.TRAP;
    default:
      throw invalidArgument(`${where}: action ${shown(action)} is not supported (ALLOW, ERRNO, KILL, KILL_THREAD, KILL_PROCESS, TRAP and LOG are)`);
  }
}

function split64(v: number, where: string): { hi: number; lo: number } {
  if (!Number.isSafeInteger(v) || v < 0) throw invalidArgument(`${where}: argument value ${shown(v)} is not an integer in [0, 2^53)`);
  const big = BigInt(v);
  return { hi: Number(big >> 32n), lo: Number(big & 0xffffffffn) };
}

/** A jump target inside one rule: "fail" is the rule's exit (the next rule). */
type Target = number | 'fail';
interface Pending {
  code: number;
  jt: Target;
  jf: Target;
  k: number;
}

const ld = (offset: number): Pending => ({ code: BPF.LD_W_ABS, jt: 0, jf: 0, k: offset });

/**
 * The check of one argument condition; it falls through when the condition
 * holds and jumps to 'fail' when not. Numeric targets are relative, as in BPF.
 */
function argCheck(arg: { index: number; value: number; valueTwo?: number; op: string }, where: string): Pending[] {
  if (!Number.isInteger(arg.index) || arg.index < 0 || arg.index > 5) throw invalidArgument(`${where}: argument index ${shown(arg.index)} is not 0..5`);
  const v = split64(arg.value, where);
  const hi = argHigh(arg.index);
  const lo = argLow(arg.index);
  switch (arg.op) {
    case 'SCMP_CMP_EQ':
      return [ld(hi), { code: BPF.JEQ_K, jt: 0, jf: 'fail', k: v.hi }, ld(lo), { code: BPF.JEQ_K, jt: 0, jf: 'fail', k: v.lo }];
    case 'SCMP_CMP_NE':
      // Holds when either half differs.
      return [ld(hi), { code: BPF.JEQ_K, jt: 0, jf: 2, k: v.hi }, ld(lo), { code: BPF.JEQ_K, jt: 'fail', jf: 0, k: v.lo }];
    case 'SCMP_CMP_MASKED_EQ': {
      // libseccomp: (arg & value) == valueTwo.
      const d = split64(arg.valueTwo ?? 0, where);
      return [
        ld(hi), { code: BPF.ALU_AND_K, jt: 0, jf: 0, k: v.hi }, { code: BPF.JEQ_K, jt: 0, jf: 'fail', k: d.hi },
        ld(lo), { code: BPF.ALU_AND_K, jt: 0, jf: 0, k: v.lo }, { code: BPF.JEQ_K, jt: 0, jf: 'fail', k: d.lo },
      ];
    }
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE':
      // High half above: holds; below: fails; equal: the low half decides.
      return [
        ld(hi), { code: BPF.JGT_K, jt: 3, jf: 0, k: v.hi }, { code: BPF.JEQ_K, jt: 0, jf: 'fail', k: v.hi },
        ld(lo), { code: arg.op === 'SCMP_CMP_GT' ? BPF.JGT_K : BPF.JGE_K, jt: 0, jf: 'fail', k: v.lo },
      ];
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE':
      return [
        ld(hi), { code: BPF.JGT_K, jt: 'fail', jf: 0, k: v.hi }, { code: BPF.JEQ_K, jt: 0, jf: 2, k: v.hi },
        ld(lo), { code: arg.op === 'SCMP_CMP_LT' ? BPF.JGE_K : BPF.JGT_K, jt: 'fail', jf: 0, k: v.lo },
      ];
    default:
      throw invalidArgument(`${where}: comparison ${shown(arg.op)} is not supported`);
  }
}

/** Resolves 'fail' targets of a block whose exit is the instruction right after it. */
function resolve(block: Pending[], where: string): BpfInstruction[] {
  return block.map((ins, i) => {
    const rel = (t: Target): number => (t === 'fail' ? block.length - i - 1 : t);
    const jt = rel(ins.jt);
    const jf = rel(ins.jf);
    if (jt > 255 || jf > 255) throw invalidArgument(`${where}: rule too long for a BPF jump`);
    return { code: ins.code, jt, jf, k: ins.k };
  });
}

/** Compiles `profile` (context names it in errors) into a BPF program for x86-64. */
export function compileSeccomp(profile: OciSeccomp, context: string): BpfInstruction[] {
  if (profile.architectures && profile.architectures.length > 0 && !profile.architectures.includes('SCMP_ARCH_X86_64')) {
    throw invalidArgument(`${context}: the seccomp profile does not cover SCMP_ARCH_X86_64 (it names ${profile.architectures.map(shown).join(', ')})`);
  }
  const fallback = actionValue(profile.defaultAction, profile.defaultErrnoRet, `${context}: defaultAction`);
  const ret = (k: number): BpfInstruction => ({ code: BPF.RET_K, jt: 0, jf: 0, k });
  const out: BpfInstruction[] = [
    { code: BPF.LD_W_ABS, jt: 0, jf: 0, k: OFFSET_ARCH },
    { code: BPF.JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
    ret(fallback),
    { code: BPF.LD_W_ABS, jt: 0, jf: 0, k: OFFSET_NR },
    { code: BPF.JGE_K, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
    ret(fallback),
  ];
  (profile.syscalls ?? []).forEach((rule, r) => {
    const where = `${context}: seccomp syscalls[${r}]`;
    const action = actionValue(rule.action, rule.errnoRet, where);
    const checks = (rule.args ?? []).flatMap((a) => argCheck(a, where));
    for (const name of rule.names) {
      const nr = X86_64_SYSCALLS[name];
      if (nr === undefined) continue;
      if (checks.length === 0) {
        out.push({ code: BPF.JEQ_K, jt: 0, jf: 1, k: nr }, ret(action));
        continue;
      }
      // Argument checks replace the accumulator: the block ends by reloading nr.
      const block: Pending[] = [{ code: BPF.JEQ_K, jt: 0, jf: 'fail', k: nr }, ...checks, { code: BPF.RET_K, jt: 0, jf: 0, k: action }];
      out.push(...resolve(block, where), { code: BPF.LD_W_ABS, jt: 0, jf: 0, k: OFFSET_NR });
    }
  });
  out.push(ret(fallback));
  if (out.length > MAX_INSTRUCTIONS) throw invalidArgument(`${context}: the seccomp profile compiles to ${out.length} BPF instructions, over the kernel's ${MAX_INSTRUCTIONS}`);
  return out;
}

/** The program as struct sock_filter bytes, hex-encoded (what the exec helper decodes). */
export function bpfHex(program: readonly BpfInstruction[]): string {
  const b = Buffer.alloc(program.length * 8);
  program.forEach((ins, i) => {
    b.writeUInt16LE(ins.code, i * 8);
    b.writeUInt8(ins.jt, i * 8 + 2);
    b.writeUInt8(ins.jf, i * 8 + 3);
    b.writeUInt32LE(ins.k >>> 0, i * 8 + 4);
  });
  return b.toString('hex');
}
