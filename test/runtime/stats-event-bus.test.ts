import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GrpcStatus } from '../../cri-api/errors.js';
import { silentLogger } from '../../cri-api/logger.js';
import type { CallContext } from '../../cri-api/server.js';
import type { ContainerEventResponse } from '../../cri-api/generated/runtime/v1/ContainerEventResponse.js';
import { EventBus, GetContainerEvents, type PodRuntime } from '../../runtime/index.js';

const ev = (i: number): ContainerEventResponse => ({ container_id: `c${i}`, container_event_type: 'CONTAINER_STARTED_EVENT', created_at: String(i) });

test('every subscriber gets every event in order', async () => {
  const bus = new EventBus(silentLogger);
  const a = bus.subscribe();
  const b = bus.subscribe();
  for (let i = 0; i < 5; i++) bus.publish(ev(i));
  for (const sub of [a, b]) {
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push((await sub.next())!.container_id!);
    assert.deepEqual(got, ['c0', 'c1', 'c2', 'c3', 'c4']);
  }
  bus.close();
  assert.equal(await a.next(), undefined, 'a closed bus ends the subscription');
  assert.equal(bus.subscriberCount, 0);
});

test('a subscriber that falls behind is dropped with RESOURCE_EXHAUSTED; the others keep going', async () => {
  const bus = new EventBus(silentLogger);
  const slow = bus.subscribe(3);
  const fast = bus.subscribe(3);
  for (let i = 0; i < 4; i++) {
    bus.publish(ev(i));
    assert.equal((await fast.next())!.container_id, `c${i}`);
  }
  await assert.rejects(slow.next(), (err: { code?: number; message: string }) => err.code === GrpcStatus.RESOURCE_EXHAUSTED && /fell 3 events behind/.test(err.message));
  assert.equal(bus.subscriberCount, 1);
  bus.publish(ev(9));
  assert.equal((await fast.next())!.container_id, 'c9');
});

test('GetContainerEvents stuck on a client that stopped reading ends when the subscriber is dropped', async () => {
  const bus = new EventBus(silentLogger);
  const rt = { events: { subscribe: () => bus.subscribe(2) } } as unknown as PodRuntime;
  let sent = 0;
  // A send that never completes: the client stopped reading and the stream has no room.
  const send = (): Promise<void> => {
    sent++;
    return new Promise(() => undefined);
  };
  const ctx: CallContext = { logger: silentLogger, signal: new AbortController().signal };
  const handler = GetContainerEvents(rt, {}, send, ctx);
  await new Promise((r) => setImmediate(r));
  bus.publish(ev(0));
  await new Promise((r) => setImmediate(r));
  for (let i = 1; i < 4; i++) bus.publish(ev(i));
  await assert.rejects(handler, (err: { code?: number }) => err.code === GrpcStatus.RESOURCE_EXHAUSTED);
  assert.equal(sent, 1);
  assert.equal(bus.subscriberCount, 0);
});

test('GetContainerEvents ends cleanly when the caller cancels', async () => {
  const bus = new EventBus(silentLogger);
  const rt = { events: bus } as unknown as PodRuntime;
  const controller = new AbortController();
  const got: string[] = [];
  const handler = GetContainerEvents(rt, {}, async (e) => void got.push(e.container_id!), { logger: silentLogger, signal: controller.signal });
  await new Promise((r) => setImmediate(r));
  bus.publish(ev(1));
  await new Promise((r) => setImmediate(r));
  controller.abort();
  await handler;
  assert.deepEqual(got, ['c1']);
  assert.equal(bus.subscriberCount, 0);
});
