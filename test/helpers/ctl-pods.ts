/**
 * A live daemon with a registry image for ctl's pod and container tests, and
 * the CRI calls that set up pods the way kubelet would.
 */
import { join } from 'node:path';
import { startDaemon, testConflist, type TestDaemon } from './daemon.js';
import { startRegistry, type TestRegistry } from './registry-server.js';
import { BUSYBOX_APPLETS, busyboxEntries, pushTestImage } from './image-builder.js';
import { eventually } from './wait.js';

export interface CtlPodWorld {
  d: TestDaemon;
  image: string;
  runPod(name: string): Promise<string>;
  runContainer(pod: string, podName: string, name: string, cmd: string[]): Promise<string>;
  state(id: string): Promise<string>;
  waitExited(id: string): Promise<void>;
  cleanup(): Promise<void>;
}

/** `key` names the daemon's CNI network within this process (testConflist). */
export async function makeCtlPodWorld(key: number | string): Promise<CtlPodWorld> {
  let registry: TestRegistry | undefined;
  let d: TestDaemon | undefined;
  const cleanup = async (): Promise<void> => {
    const pods = await d?.call<{ items: { id: string }[] }>('runtime', 'ListPodSandbox', {}).catch(() => ({ items: [] }));
    for (const p of pods?.items ?? []) {
      await d!.call('runtime', 'StopPodSandbox', { pod_sandbox_id: p.id }).catch(() => undefined);
      await d!.call('runtime', 'RemovePodSandbox', { pod_sandbox_id: p.id }).catch(() => undefined);
    }
    await d?.cleanup();
    await registry?.stop();
  };
  try {
    registry = await startRegistry();
    const pushed = await pushTestImage(registry.url, 'ctl/pods', {
      layers: [{ entries: busyboxEntries([...new Set([...BUSYBOX_APPLETS, 'seq'])]) }],
      config: { Cmd: ['sleep', '3600'], Env: ['PATH=/bin'] },
    });
    const image = pushed.ref;
    const daemon = await startDaemon({ conflist: testConflist(key) });
    d = daemon;
    await daemon.call('image', 'PullImage', { image: { image } });
    const podConfig = (name: string) => ({ metadata: { name, uid: `uid-${name}`, namespace: 'ctl-ns', attempt: 1 }, hostname: name, log_directory: join(daemon.logDir, name) });
    const state = async (id: string): Promise<string> => (await daemon.call<{ status: { state: string } }>('runtime', 'ContainerStatus', { container_id: id })).status.state;
    return {
      d: daemon,
      image,
      async runPod(name) {
        return (await daemon.call<{ pod_sandbox_id: string }>('runtime', 'RunPodSandbox', { config: podConfig(name) })).pod_sandbox_id;
      },
      async runContainer(pod, podName, name, cmd) {
        const config = { metadata: { name, attempt: 0 }, image: { image }, command: cmd, log_path: `${name}.log` };
        const { container_id } = await daemon.call<{ container_id: string }>('runtime', 'CreateContainer', { pod_sandbox_id: pod, config, sandbox_config: podConfig(podName) });
        await daemon.call('runtime', 'StartContainer', { container_id });
        return container_id;
      },
      state,
      async waitExited(id) {
        await eventually(async () => (await state(id)) === 'CONTAINER_EXITED', 20_000, `container ${id} to exit`);
      },
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
