import { isIPv4, isIPv6 } from 'node:net';

/**
 * Reads the pod's addresses out of a CNI ADD result. Results of 0.3.x/0.4.x
 * carry `ips[].version`; 1.x dropped it, so the family is taken from the
 * address itself in every version.
 */

interface ResultInterface {
  name?: unknown;
  sandbox?: unknown;
}

interface ResultIp {
  address?: unknown;
  interface?: unknown;
}

/** Addresses (without prefix length) assigned to ifName inside the pod, IPv4 first, each family in result order. */
export function podIps(result: unknown, ifName: string): string[] {
  return podAddresses(result, ifName).map((a) => a.split('/')[0]!);
}

/** Like podIps, with prefix lengths as the result gives them ("10.1.2.3/24"). */
export function podAddresses(result: unknown, ifName: string): string[] {
  if (typeof result !== 'object' || result === null) return [];
  const r = result as { interfaces?: unknown; ips?: unknown };
  const interfaces = Array.isArray(r.interfaces) ? (r.interfaces as ResultInterface[]) : [];
  const ips = Array.isArray(r.ips) ? (r.ips as ResultIp[]) : [];
  const out: string[] = [];
  for (const ip of ips) {
    if (typeof ip?.address !== 'string') continue;
    // An index names the interface the address is on; skip host-side ones (no sandbox) and other pod interfaces.
    if (typeof ip.interface === 'number') {
      const itf = interfaces[ip.interface];
      if (itf !== undefined && (typeof itf.sandbox !== 'string' || itf.sandbox === '' || (typeof itf.name === 'string' && itf.name !== ifName))) continue;
    }
    const addr = ip.address.split('/')[0] ?? '';
    if ((isIPv4(addr) || isIPv6(addr)) && !out.some((a) => a.startsWith(`${addr}/`) || a === addr)) out.push(ip.address);
  }
  const v4 = (a: string): boolean => isIPv4(a.split('/')[0]!);
  return [...out.filter(v4), ...out.filter((a) => !v4(a))];
}

/** Routes of a CNI result, each with its gateway (a route without one goes via the same family's address gateway, as CNI's ipam helpers do). */
export function podRoutes(result: unknown): { dst: string; gw?: string }[] {
  if (typeof result !== 'object' || result === null) return [];
  const r = result as { routes?: unknown; ips?: unknown };
  const ips = Array.isArray(r.ips) ? (r.ips as { gateway?: unknown }[]) : [];
  const gateways = ips.map((ip) => ip?.gateway).filter((g): g is string => typeof g === 'string' && (isIPv4(g) || isIPv6(g)));
  const out: { dst: string; gw?: string }[] = [];
  for (const route of Array.isArray(r.routes) ? (r.routes as { dst?: unknown; gw?: unknown }[]) : []) {
    if (typeof route?.dst !== 'string') continue;
    const v4 = isIPv4(route.dst.split('/')[0] ?? '');
    const gw = typeof route.gw === 'string' && route.gw !== '' ? route.gw : gateways.find((g) => isIPv4(g) === v4);
    out.push(gw ? { dst: route.dst, gw } : { dst: route.dst });
  }
  return out;
}
