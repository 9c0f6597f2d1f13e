/**
 * IDs as people type them: a full ID, an unambiguous prefix of one, or (for
 * convenience) an exact pod or container name. One List call, then matching.
 */
import type { Container__Output } from '../cri-api/generated/runtime/v1/Container.js';
import type { PodSandbox__Output } from '../cri-api/generated/runtime/v1/PodSandbox.js';
import type { ListContainersResponse__Output } from '../cri-api/generated/runtime/v1/ListContainersResponse.js';
import type { ListPodSandboxResponse__Output } from '../cri-api/generated/runtime/v1/ListPodSandboxResponse.js';
import { CtlError, type CtlClient } from './client.js';
import { shortId } from './format.js';

interface Named {
  id: string;
  metadata: { name: string } | null;
}

function pick<T extends Named>(kind: 'pod' | 'container', items: T[], given: string): T {
  if (given === '') throw new CtlError(`empty ${kind} ID`, 2);
  const exact = items.find((i) => i.id === given);
  if (exact) return exact;
  const byPrefix = items.filter((i) => i.id.startsWith(given));
  const matches = byPrefix.length > 0 ? byPrefix : items.filter((i) => i.metadata?.name === given);
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw new CtlError(`${kind} "${given}" not found (no ${kind} ID starts with it and no ${kind} has that name)`);
  throw new CtlError(`${kind} "${given}" is ambiguous: it matches ${matches.length} ${kind}s (${matches.map((m) => shortId(m.id)).join(', ')}); give more of the ID`);
}

export async function resolvePod(client: CtlClient, given: string): Promise<PodSandbox__Output> {
  const res = await client.call<ListPodSandboxResponse__Output>(`look up pod "${given}": list pods`, (o, cb) => client.runtime.ListPodSandbox({}, o, cb));
  return pick('pod', res.items, given);
}

export async function resolveContainer(client: CtlClient, given: string): Promise<Container__Output> {
  const res = await client.call<ListContainersResponse__Output>(`look up container "${given}": list containers`, (o, cb) => client.runtime.ListContainers({}, o, cb));
  return pick('container', res.containers, given);
}
