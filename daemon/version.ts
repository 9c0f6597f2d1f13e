import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';

// version.js lives in dist/daemon/ once built; package.json and build-info.json are found from there.
const fromDist = import.meta.url.includes('/dist/');

/** gvisor-cri's version, from package.json (found from source and from dist/). */
export const VERSION: string = (JSON.parse(readFileSync(new URL(fromDist ? '../../package.json' : '../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * The commit dist/ was built from, as `git describe --always --dirty` said at
 * build time (scripts/build-info.js); "unknown" where the build had no git
 * or wrote no build-info.json (tsc alone).
 */
export const COMMIT: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL(fromDist ? '../build-info.json' : '../dist/build-info.json', import.meta.url), 'utf8')) as { commit: string }).commit;
  } catch {
    return 'unknown';
  }
})();

export interface VersionInfo {
  version: string;
  commit: string;
  /** First line of `runsc --version`, or why there is none (runsc comes from Debian, not with gvisor-cri). */
  runscVersion: string;
  /** The Node.js runtime this process runs on (the bundled one in a release). */
  node: string;
}

/** Version, build commit and the version of the runsc at `runscPath`; never rejects. */
export function versionInfo(runscPath: string): Promise<VersionInfo> {
  return new Promise((resolve) => {
    execFile(runscPath, ['--version'], { timeout: 10_000 }, (err, stdout) => {
      const line = stdout.split('\n')[0]!.trim();
      const runscVersion = err ? `unavailable (${runscPath}: ${err.message.split('\n')[0]})` : line.replace(/^runsc version /, '');
      resolve({ version: VERSION, commit: COMMIT, runscVersion, node: process.version });
    });
  });
}

/**
 * The CRI VersionResponse's runtime_version (kubelet shows it as the node's
 * containerRuntimeVersion, `gvisor-cri://<this>`): the version with the build
 * commit as semver build metadata, then the runsc that runs the pods.
 */
export function criRuntimeVersion(info: VersionInfo): string {
  return `${info.version}+${info.commit} (runsc ${info.runscVersion})`;
}
