/**
 * The container event bus behind GetContainerEvents (kubelet's evented
 * PLEG). Every subscriber has its own bounded queue: publishing never waits
 * for a subscriber, and one that falls too far behind is dropped (its
 * stream ends with RESOURCE_EXHAUSTED) so it cannot grow the daemon's memory.
 */
import type { ContainerEventResponse } from '../../cri-api/generated/runtime/v1/ContainerEventResponse.js';
import type { ContainerEventType__Output } from '../../cri-api/generated/runtime/v1/ContainerEventType.js';
import { CriError, GrpcStatus } from '../../cri-api/errors.js';
import type { Logger } from '../../cri-api/logger.js';
import type { ContainerStatus } from '../../cri-api/generated/runtime/v1/ContainerStatus.js';
import { sandboxStatus } from '../records/cri-view.js';
import type { SandboxRecord } from '../records/store.js';

export type ContainerEventType = ContainerEventType__Output;

/** Events a subscriber may have waiting before it is dropped. */
export const DEFAULT_SUBSCRIBER_QUEUE = 1000;

/**
 * The event as kubelet wants it: the pod's status and every container's
 * at the moment of the change. Pod events carry the pod id as container_id.
 */
export function containerEvent(type: ContainerEventType, id: string, pod: SandboxRecord, containers: ContainerStatus[], createdAtNs: string): ContainerEventResponse {
  return {
    container_id: id,
    container_event_type: type,
    created_at: createdAtNs,
    pod_sandbox_status: sandboxStatus(pod),
    containers_statuses: containers,
  };
}

export class EventSubscription {
  private readonly queue: ContainerEventResponse[] = [];
  private wake: (() => void) | undefined;
  private failure: CriError | undefined;
  private closed = false;
  private readonly bus: EventBus;
  private readonly limit: number;
  private endedResolve!: () => void;
  /** Resolves once the subscription is closed or failed (a sender stuck on back-pressure waits on this too). */
  readonly ended: Promise<void> = new Promise((resolve) => (this.endedResolve = resolve));

  constructor(bus: EventBus, limit: number) {
    this.bus = bus;
    this.limit = limit;
  }

  /** Called by the bus; never blocks. */
  push(ev: ContainerEventResponse): void {
    if (this.closed) return;
    if (this.queue.length >= this.limit) {
      this.fail(new CriError(GrpcStatus.RESOURCE_EXHAUSTED, `event subscriber fell ${this.limit} events behind and was dropped; subscribe again and relist`));
      return;
    }
    this.queue.push(ev);
    this.wake?.();
  }

  fail(err: CriError): void {
    if (this.closed) return;
    this.failure = err;
    this.queue.length = 0;
    this.close();
  }

  /** The next event; rejects once the subscription failed, resolves undefined once it is closed or `signal` aborts. */
  async next(signal?: AbortSignal): Promise<ContainerEventResponse | undefined> {
    for (;;) {
      if (this.failure) throw this.failure;
      const ev = this.queue.shift();
      if (ev) return ev;
      if (this.closed || signal?.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.wake = undefined;
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.wake = done;
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.bus.unsubscribe(this);
    this.endedResolve();
    this.wake?.();
  }
}

export class EventBus {
  private readonly subscribers = new Set<EventSubscription>();
  private readonly logger: Logger;

  constructor(logger: Logger) {
    this.logger = logger;
  }

  subscribe(limit = DEFAULT_SUBSCRIBER_QUEUE): EventSubscription {
    const sub = new EventSubscription(this, limit);
    this.subscribers.add(sub);
    return sub;
  }

  unsubscribe(sub: EventSubscription): void {
    this.subscribers.delete(sub);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  publish(ev: ContainerEventResponse): void {
    for (const sub of [...this.subscribers]) {
      sub.push(ev);
      if (!this.subscribers.has(sub)) this.logger.warn({ containerId: ev.container_id, event: ev.container_event_type }, 'dropped a container event subscriber whose queue overflowed');
    }
  }

  /** Ends every subscription (daemon shutdown). */
  close(): void {
    for (const sub of [...this.subscribers]) sub.close();
  }
}
