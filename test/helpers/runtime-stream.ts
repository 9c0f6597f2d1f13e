/**
 * A CriWorld with the streaming server in front of RuntimeStreamBackend,
 * one ready pod, and the Exec/Attach/PortForward handlers called as the
 * gRPC server would: tests open the returned URL with stream-client.ts.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createLogger, silentLogger } from '../../cri-api/logger.js';
import type { CallContext } from '../../cri-api/server.js';
import { Attach, Exec, PortForward, RuntimeStreamBackend } from '../../runtime/index.js';
import { StreamServer } from '../../stream/index.js';
import { call, containerConfig, makeCriWorld, podConfig, type CriWorld } from './cri-world.js';

const testLogger = process.env.CRI_TEST_LOG ? createLogger(process.env.CRI_TEST_LOG) : silentLogger;
const ctx: CallContext = { logger: silentLogger, signal: new AbortController().signal };

export interface StreamWorld {
  w: CriWorld;
  server: StreamServer;
  pod: string;
  /** Creates and starts a container in the pod; returns its id. */
  run(name: string, o?: Parameters<typeof containerConfig>[2]): Promise<string>;
  execUrl(containerId: string, cmd: string[], o?: { tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean }): Promise<string>;
  attachUrl(containerId: string, o?: { tty?: boolean; stdin?: boolean; stdout?: boolean; stderr?: boolean }): Promise<string>;
  portForwardUrl(podId: string, ports?: number[]): Promise<string>;
  cleanup(): Promise<void>;
}

export async function makeStreamWorld(podName = 'streams'): Promise<StreamWorld> {
  const w = await makeCriWorld();
  let server: StreamServer | undefined;
  try {
    const backend = new RuntimeStreamBackend({ rt: w.rt, runsc: w.runsc, busybox: w.infra.busybox, logger: testLogger });
    const started = await StreamServer.start({ address: '127.0.0.1', port: 0, backend, logger: silentLogger });
    server = started;
    const pod = (await call(w.rt, 'RunPodSandbox', { config: podConfig(podName, w.logDir), runtime_handler: '' })).pod_sandbox_id;
    return {
      w,
      server: started,
      pod,
      async run(name, o = {}) {
        const id = (await call(w.rt, 'CreateContainer', { pod_sandbox_id: pod, config: containerConfig(name, w.image, o) })).container_id;
        await call(w.rt, 'StartContainer', { container_id: id });
        return id;
      },
      async execUrl(containerId, cmd, o = {}) {
        const r = await Exec(w.rt, started, { container_id: containerId, cmd, tty: o.tty ?? false, stdin: o.stdin ?? false, stdout: o.stdout ?? true, stderr: o.stderr ?? !o.tty, audit_request_id: '' }, ctx);
        return r.url!;
      },
      async attachUrl(containerId, o = {}) {
        const r = await Attach(w.rt, started, { container_id: containerId, tty: o.tty ?? false, stdin: o.stdin ?? false, stdout: o.stdout ?? true, stderr: o.stderr ?? !o.tty, audit_request_id: '' }, ctx);
        return r.url!;
      },
      async portForwardUrl(podId, ports = []) {
        const r = await PortForward(w.rt, started, { pod_sandbox_id: podId, port: ports }, ctx);
        return r.url!;
      },
      async cleanup() {
        await started.close().catch(() => undefined);
        await w.cleanup();
      },
    };
  } catch (err) {
    await server?.close().catch(() => undefined);
    await w.cleanup();
    throw err;
  }
}

/** Open descriptors of this process. */
export function fdCount(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Host processes whose command line runs runsc against `root` with `subcommand`. */
export function runscProcesses(root: string, subcommand: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const exe = readlinkSync(`/proc/${name}/exe`);
      if (!exe.includes('runsc')) continue;
      const cmd = readFileArgs(Number(name));
      if (cmd.includes(`--root=${root}`) && cmd.includes(subcommand)) pids.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

function readFileArgs(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
}
