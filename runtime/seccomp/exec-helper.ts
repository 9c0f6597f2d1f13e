/**
 * The seccomp exec helper: a static x86-64 program, put beside the infra
 * program and bind-mounted read-only into every container that has a seccomp
 * filter, because `runsc exec` starts processes outside the container's init
 * and installs no filter on them. `helper HEX-BPF PROGRAM ARG...` decodes the
 * filter, installs it (seccomp(SECCOMP_SET_MODE_FILTER); when that needs it,
 * after prctl(PR_SET_NO_NEW_PRIVS)) and execve()s PROGRAM, searching $PATH as
 * execvp does. The exec keeps the user, cwd, environment and capabilities
 * runsc gave it. Failures: 127 and "NAME: executable file not found in $PATH"
 * when nothing was found, 126 for anything else, with a line on stderr.
 */
import { staticElf } from '../spec/static-elf.js';

/** Where the helper appears inside a filtered container. */
export const SECCOMP_HELPER_PATH = '/.gvisor-cri-seccomp';

/**
 * Machine code (position independent; GNU as, Intel syntax; the filter is
 * decoded in place over its own argv string):
 *
 *   _start:
 *     mov rbx, rsp
 *     cmp qword ptr [rbx], 3
 *     jb usage
 *     mov rsi, [rbx+16]
 *     mov rdi, rsi
 *   decode:
 *     movzx eax, byte ptr [rsi]
 *     test eax, eax
 *     jz decoded
 *     call nibble
 *     shl eax, 4
 *     mov edx, eax
 *     movzx eax, byte ptr [rsi+1]
 *     call nibble
 *     or eax, edx
 *     mov [rdi], al
 *     inc rdi
 *     add rsi, 2
 *     jmp decode
 *   nibble:
 *     sub al, 0x30
 *     cmp al, 9
 *     jbe 1f
 *     sub al, 0x31
 *     cmp al, 5
 *     ja badhex
 *     add al, 10
 *   1:
 *     ret
 *   decoded:
 *     mov rsi, [rbx+16]
 *     sub rdi, rsi
 *     shr rdi, 3
 *     jz badhex
 *     sub rsp, 16
 *     mov [rsp], rdi
 *     mov [rsp+8], rsi
 *     mov r15, rsp
 *     call install
 *     test rax, rax
 *     jz execute
 *     mov eax, 157
 *     mov edi, 38
 *     mov esi, 1
 *     xor edx, edx
 *     xor r10d, r10d
 *     xor r8d, r8d
 *     syscall
 *     call install
 *     test rax, rax
 *     jnz badfilter
 *   execute:
 *     lea r13, [rbx+24]
 *     mov r12, [r13]
 *     mov rax, [rbx]
 *     lea r14, [rbx+rax*8+16]
 *     mov rdi, r12
 *   find_slash:
 *     mov al, [rdi]
 *     test al, al
 *     jz search
 *     cmp al, 0x2f
 *     je direct
 *     inc rdi
 *     jmp find_slash
 *   direct:
 *     mov rdi, r12
 *     call exec
 *     jmp execfail
 *   exec:
 *     mov rsi, r13
 *     mov rdx, r14
 *     mov eax, 59
 *     syscall
 *     ret
 *   install:
 *     mov eax, 317
 *     mov edi, 1
 *     xor esi, esi
 *     mov rdx, r15
 *     syscall
 *     ret
 *   search:
 *     sub rsp, 4096
 *     mov r9, rsp
 *     lea r8, [rsp+4095]
 *     mov rbp, -2
 *     mov rcx, r14
 *   env_loop:
 *     mov rsi, [rcx]
 *     test rsi, rsi
 *     jz nopath
 *     cmp dword ptr [rsi], 0x48544150
 *     jne 2f
 *     cmp byte ptr [rsi+4], 0x3d
 *     je gotpath
 *   2:
 *     add rcx, 8
 *     jmp env_loop
 *   nopath:
 *     lea rsi, [rip+default_path]
 *     jmp dirs
 *   gotpath:
 *     add rsi, 5
 *   dirs:
 *     mov rdi, r9
 *   copy_dir:
 *     mov al, [rsi]
 *     test al, al
 *     jz dir_end
 *     cmp al, 0x3a
 *     je dir_end
 *     cmp rdi, r8
 *     jae toolong
 *     mov [rdi], al
 *     inc rdi
 *     inc rsi
 *     jmp copy_dir
 *   dir_end:
 *     cmp rdi, r9
 *     je 3f
 *     cmp rdi, r8
 *     jae toolong
 *     mov byte ptr [rdi], 0x2f
 *     inc rdi
 *   3:
 *     mov rdx, r12
 *   copy_name:
 *     cmp rdi, r8
 *     jae toolong
 *     mov al, [rdx]
 *     mov [rdi], al
 *     inc rdi
 *     inc rdx
 *     test al, al
 *     jnz copy_name
 *     mov r15, rsi
 *     mov rdi, r9
 *     call exec
 *     mov rsi, r15
 *     cmp rax, -2
 *     je 4f
 *     cmp rax, -20
 *     je 4f
 *     mov rbp, rax
 *   4:
 *     cmp byte ptr [rsi], 0
 *     je exhausted
 *     inc rsi
 *     jmp dirs
 *   toolong:
 *     mov rbp, -36
 *   exhausted:
 *     mov rax, rbp
 *   execfail:
 *     cmp rax, -2
 *     je notfound
 *     lea rsi, [rip+msg_noexec]
 *     mov edx, msg_noexec_end - msg_noexec
 *     mov r15d, 126
 *     jmp report
 *   notfound:
 *     lea rsi, [rip+msg_notfound]
 *     mov edx, msg_notfound_end - msg_notfound
 *     mov r15d, 127
 *   report:
 *     mov r13, rsi
 *     mov r14, rdx
 *     mov rdx, r12
 *   5:
 *     cmp byte ptr [rdx], 0
 *     je 6f
 *     inc rdx
 *     jmp 5b
 *   6:
 *     sub rdx, r12
 *     mov rsi, r12
 *     mov edi, 2
 *     mov eax, 1
 *     syscall
 *     mov rsi, r13
 *     mov rdx, r14
 *     jmp say
 *   usage:
 *     lea rsi, [rip+msg_usage]
 *     mov edx, msg_usage_end - msg_usage
 *     jmp fail
 *   badhex:
 *     lea rsi, [rip+msg_badhex]
 *     mov edx, msg_badhex_end - msg_badhex
 *     jmp fail
 *   badfilter:
 *     lea rsi, [rip+msg_badfilter]
 *     mov edx, msg_badfilter_end - msg_badfilter
 *   fail:
 *     mov r15d, 126
 *   say:
 *     mov edi, 2
 *     mov eax, 1
 *     syscall
 *     mov edi, r15d
 *     mov eax, 231
 *     syscall
 *   default_path:
 *     .asciz "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
 *   msg_notfound:
 *     .ascii ": executable file not found in $PATH\n"
 *   msg_notfound_end:
 *   msg_noexec:
 *     .ascii ": cannot execute (permission denied or not an executable)\n"
 *   msg_noexec_end:
 *   msg_usage:
 *     .ascii "seccomp helper: usage: helper HEX-BPF PROGRAM [ARG...]\n"
 *   msg_usage_end:
 *   msg_badhex:
 *     .ascii "seccomp helper: the filter is not a hex-encoded BPF program\n"
 *   msg_badhex_end:
 *   msg_badfilter:
 *     .ascii "seccomp helper: installing the seccomp filter failed\n"
 *   msg_badfilter_end:
 */
const CODE =
  '4889e348833b030f82f3010000488b73104889f70fb60685c07433e81b000000c1e00489c20fb64601e80d00000009d0' +
  '880748ffc74883c602ebd92c303c09760c2c313c050f87c3010000040ac3488b73104829f748c1ef030f84af01000048' +
  '83ec1048893c2448897424084989e7e8690000004885c07427b89d000000bf26000000be0100000031d24531d24531c0' +
  '0f05e8460000004885c00f857c0100004c8d6b184d8b6500488b034c8d74c3104c89e78a0784c074363c2f740548ffc7' +
  'ebf14c89e7e805000000e9d80000004c89ee4c89f2b83b0000000f05c3b83d010000bf0100000031f64c89fa0f05c348' +
  '81ec001000004989e14c8d8424ff0f000048c7c5feffffff4c89f1488b314885f67414813e504154487506807e043d74' +
  '0f4883c108ebe4488d3516010000eb044883c6054c89cf8a0684c074133c3a740f4c39c77357880748ffc748ffc6ebe7' +
  '4c39cf740b4c39c77343c6072f48ffc74c89e24c39c773358a02880748ffc748ffc284c075ed4989f74c89cfe84effff' +
  'ff4c89fe4883f8fe74094883f8ec74034889c5803e00740c48ffc6eb9748c7c5dcffffff4889e84883f8fe7414488d35' +
  'f2000000ba3a00000041bf7e000000eb12488d35b9000000ba2500000041bf7f0000004989f54989d64c89e2803a0074' +
  '0548ffc2ebf64c29e24c89e6bf02000000b8010000000f054c89ee4c89f2eb2e488d35d9000000ba37000000eb1a488d' +
  '3502010000ba3c000000eb0c488d3530010000ba3500000041bf7e000000bf02000000b8010000000f054489ffb8e700' +
  '00000f052f7573722f6c6f63616c2f7362696e3a2f7573722f6c6f63616c2f62696e3a2f7573722f7362696e3a2f7573' +
  '722f62696e3a2f7362696e3a2f62696e003a2065786563757461626c652066696c65206e6f7420666f756e6420696e20' +
  '24504154480a3a2063616e6e6f74206578656375746520287065726d697373696f6e2064656e696564206f72206e6f74' +
  '20616e2065786563757461626c65290a736563636f6d702068656c7065723a2075736167653a2068656c706572204845' +
  '582d4250462050524f4752414d205b4152472e2e2e5d0a736563636f6d702068656c7065723a207468652066696c7465' +
  '72206973206e6f742061206865782d656e636f646564204250462070726f6772616d0a736563636f6d702068656c7065' +
  '723a20696e7374616c6c696e672074686520736563636f6d702066696c746572206661696c65640a';

export function seccompHelperElf(): Buffer {
  return staticElf(Buffer.from(CODE, 'hex'));
}

/** The argv that runs `cmd` under `filter` (hex BPF), or `cmd` itself when the container has none. */
export function filteredArgs(filter: string | undefined, cmd: readonly string[]): string[] {
  return filter ? [SECCOMP_HELPER_PATH, filter, ...cmd] : [...cmd];
}
