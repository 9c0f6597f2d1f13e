/**
 * The floor of the pull-floor case: the same blobs from the local registry,
 * manifest and config with node's plain http client, then each layer as
 * `curl | gzip -dc | tar -x` into its own directory (the byte-heavy part in
 * C, streamed), with the same layer concurrency as gvisor-cri's default.
 * Nothing is stored, verified (no digests) or recorded: a lower bound, not
 * a puller.
 */
import http from 'node:http';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';

/** gvisor-cri's default `max-concurrent-downloads`. */
export const FLOOR_LAYER_CONCURRENCY = 3;

const ACCEPT = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');

interface Manifest {
  config: { digest: string };
  layers: Array<{ digest: string; mediaType: string }>;
}

function get(url: string, accept?: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: accept ? { Accept: accept } : {} }, (res) => {
      if (res.statusCode === 200) return resolve(res);
      res.resume();
      reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
    });
    req.on('error', (err) => reject(new Error(`GET ${url}: ${err.message}`)));
  });
}

async function body(res: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const LAYER_TIMEOUT_MS = 60_000;

/** `curl URL | gzip -dc | tar -x -C DIR` (no gzip for a plain tar); URL and DIR go as arguments, never into the script. */
async function curlUntar(url: string, dir: string, gzip: boolean): Promise<void> {
  const script = `set -o pipefail; curl -q -sfS --noproxy '*' "$1" | ${gzip ? 'gzip -dc | ' : ''}tar -x -C "$2"`;
  const r = await execa('bash', ['-c', script, 'floor', url, dir], { reject: false, timeout: LAYER_TIMEOUT_MS, stdin: 'ignore' });
  if (r.exitCode !== 0) throw new Error(`curl | ${gzip ? 'gzip -dc | ' : ''}tar -x of ${url}: ${r.stderr.trim() || (r.timedOut ? 'timed out' : `exit code ${r.exitCode}`)}`);
}

/** Splits `host:port/name:tag` into the registry API's pieces. */
export function splitRef(ref: string): { host: string; name: string; tag: string } {
  const slash = ref.indexOf('/');
  const rest = ref.slice(slash + 1);
  const colon = rest.lastIndexOf(':');
  return { host: ref.slice(0, slash), name: colon > 0 ? rest.slice(0, colon) : rest, tag: colon > 0 ? rest.slice(colon + 1) : 'latest' };
}

/** Fetches `ref` (on a plain-HTTP registry) and unpacks its layers under `dir` (layer-0, layer-1, ...). */
export async function fetchAndUnpack(ref: string, dir: string): Promise<void> {
  const { host, name, tag } = splitRef(ref);
  const base = `http://${host}/v2/${name}`;
  const manifest = JSON.parse((await body(await get(`${base}/manifests/${tag}`, ACCEPT))).toString('utf8')) as Manifest;
  await body(await get(`${base}/blobs/${manifest.config.digest}`));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < manifest.layers.length) {
      const i = next++;
      const layer = manifest.layers[i];
      const cwd = join(dir, `layer-${i}`);
      await mkdir(cwd, { recursive: true });
      await curlUntar(`${base}/blobs/${layer.digest}`, cwd, layer.mediaType.endsWith('gzip'));
    }
  };
  await Promise.all(Array.from({ length: Math.min(FLOOR_LAYER_CONCURRENCY, manifest.layers.length) }, worker));
}
