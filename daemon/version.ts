import { readFileSync } from 'node:fs';

/** gvisor-cri's version, from package.json (found from source and from dist/). */
export const VERSION: string = (() => {
  const rel = import.meta.url.includes('/dist/') ? '../../package.json' : '../package.json';
  return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
})();
