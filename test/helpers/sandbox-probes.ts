// Tools for checking what a pod can reach from inside gVisor: a static
// program that connects to a unix socket (busybox-static's nc cannot), and a
// receiver for gVisor's trace "remote" sink (SOCK_SEQPACKET, which Node
// cannot listen on: python3 does it).
import { spawn, type ChildProcess } from 'node:child_process';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { staticElf } from '../../runtime/spec/static-elf.js';

/**
 * x86-64 machine code of `connect-unix PATH`: socket(AF_UNIX, SOCK_STREAM)
 * and connect() to argv[1]; exits 0 on success, else with the errno
 * (111 ECONNREFUSED, 13 EACCES, 2 ENOENT...). Assembled from:
 *   mov rsi,[rsp+16]; sub rsp,112; mov word [rsp],1; lea rdi,[rsp+2]; mov ecx,107
 *   copy: mov al,[rsi]; mov [rdi],al; test al,al; jz done; inc rsi; inc rdi; dec ecx; jnz copy; mov byte [rdi],0
 *   done: socket(1,1,0) (eax=41); js fail; connect(fd, rsp, 110) (eax=42); js fail; exit(0)
 *   fail: neg eax; exit(eax)
 */
const CONNECT_UNIX_CODE = Buffer.from(
  '488b7424104883ec7066c704240100488d7c2402b96b0000008a06880784c0740d48ffc648ffc7ffc975eec60700b829000000bf01000000be0100000031d20f0585c0781e89c74889e6ba6e000000b82a0000000f0585c0780931ffb83c0000000f05f7d889c7b83c0000000f05',
  'hex',
);

export function connectUnixElf(): Buffer {
  return staticElf(CONNECT_UNIX_CODE);
}

/** One message a sandbox sent to the trace sink. */
export interface TraceMessage {
  /** pb.MessageType of gVisor's seccheck (1 container start, 3 execve, 5 task exit...). */
  type: number;
  dropped: number;
  payload: Buffer;
}

export interface TraceReceiver {
  path: string;
  /** Sandboxes that connected (each sandbox opens one connection). */
  connections(): number;
  messages(): TraceMessage[];
  stop(): Promise<void>;
}

/**
 * gVisor's remote sink protocol (pkg/sentry/seccheck/sinks/remote): the
 * sandbox connects and sends a Handshake proto; the receiver answers with
 * its own (version 1: bytes 08 01); then every message is an 8-byte header
 * (u16 header size, u16 message type, u32 dropped count) and a proto.
 */
const RECEIVER_PY = String.raw`
import json, os, socket, struct, sys, threading
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(path)
s.listen(64)
lock = threading.Lock()
def emit(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
emit({"ready": True})
def serve(c):
    c.recv(10240)
    c.send(b"\x08\x01")
    while True:
        m = c.recv(300 * 1024)
        if not m:
            return
        size, mtype, dropped = struct.unpack("<HHI", m[:8])
        emit({"type": mtype, "dropped": dropped, "payload": m[size:].hex()})
while True:
    c, _ = s.accept()
    emit({"accepted": True})
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

export async function startTraceReceiver(path: string): Promise<TraceReceiver> {
  const proc: ChildProcess = spawn('python3', ['-c', RECEIVER_PY, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let accepted = 0;
  const messages: TraceMessage[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`trace receiver exited with ${code}: ${stderr}`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as { ready?: boolean; accepted?: boolean; type?: number; dropped?: number; payload?: string };
      if (m.ready) resolve();
      else if (m.accepted) accepted++;
      else messages.push({ type: m.type ?? 0, dropped: m.dropped ?? 0, payload: Buffer.from(m.payload ?? '', 'hex') });
    });
  });
  await ready;
  await access(path);
  return {
    path,
    connections: () => accepted,
    messages: () => [...messages],
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}
