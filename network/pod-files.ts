import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { invalidArgument, wrapError } from '../cri-api/errors.js';
import { writeFileAtomic } from '../common/index.js';
import type { DnsConfig } from './types.js';

const HOST_RESOLV_CONF = '/etc/resolv.conf';
// RFC 1123 labels; kubelet already validates, this guards the files against injected lines.
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const NO_SPACE = /^\S+$/;

/** resolv.conf text for a pod's DNSConfig; empty when it says nothing (then the host's file is used). */
export function resolvConfText(dns: DnsConfig): string {
  const lines: string[] = [];
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  for (const s of dns.servers) lines.push(`nameserver ${s}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(' ')}`);
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

/** /etc/hosts text: localhost for both families, then the pod's own addresses under its hostname. */
export function hostsText(hostname: string, ips: string[]): string {
  const lines = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  for (const ip of ips) lines.push(`${ip}\t${hostname}`);
  return `${lines.join('\n')}\n`;
}

function checkInput(p: { hostname: string; dns?: DnsConfig; ips: string[] }): void {
  if (!HOSTNAME.test(p.hostname) || p.hostname.length > 253) throw invalidArgument(`pod files: hostname "${p.hostname}" is not a valid DNS name`);
  for (const ip of p.ips) if (isIP(ip) === 0) throw invalidArgument(`pod files for ${p.hostname}: "${ip}" is not an IP address`);
  if (!p.dns) return;
  for (const s of p.dns.servers) if (isIP(s) === 0) throw invalidArgument(`pod files for ${p.hostname}: DNS server "${s}" is not an IP address`);
  for (const v of [...p.dns.searches, ...p.dns.options]) {
    if (!NO_SPACE.test(v)) throw invalidArgument(`pod files for ${p.hostname}: DNS search/option "${v}" must be one word`);
  }
}

/**
 * Writes a pod's resolv.conf, hosts and hostname files into dir (to be
 * mounted at /etc/...). With no DNSConfig (or an empty one) the host's
 * resolv.conf is copied, as kubelet expects for the "Default" DNS policy.
 */
export async function writePodFiles(
  dir: string,
  p: { hostname: string; dns?: DnsConfig; ips: string[] },
): Promise<{ resolvConf: string; hosts: string; hostname: string }> {
  checkInput(p);
  const out = { resolvConf: join(dir, 'resolv.conf'), hosts: join(dir, 'hosts'), hostname: join(dir, 'hostname') };
  try {
    await mkdir(dir, { recursive: true });
    let resolv = p.dns ? resolvConfText(p.dns) : '';
    if (resolv === '') resolv = await readFile(HOST_RESOLV_CONF, 'utf8').catch(() => '');
    // Under the run dir (tmpfs): atomic, not durable (common/atomic-write.ts).
    await writeFileAtomic(out.resolvConf, resolv, { durability: 'atomic' });
    await writeFileAtomic(out.hosts, hostsText(p.hostname, p.ips), { durability: 'atomic' });
    await writeFileAtomic(out.hostname, `${p.hostname}\n`, { durability: 'atomic' });
  } catch (err) {
    throw wrapError(err, `write pod files for ${p.hostname} in ${dir}`);
  }
  return out;
}

/**
 * Rewrites a pod's hosts file (made by writePodFiles) with its addresses,
 * in place: a sandbox created before CNI ADD gave them already bind-mounted
 * that very file (runsc's gofer binds it at create), and a new file renamed
 * over it would stay unseen there. Nothing reads it before the sandbox starts.
 */
export async function writePodHosts(path: string, p: { hostname: string; ips: string[] }): Promise<void> {
  checkInput(p);
  try {
    await writeFile(path, hostsText(p.hostname, p.ips));
  } catch (err) {
    throw wrapError(err, `write pod hosts file ${path}`);
  }
}
