import { invalidArgument } from '../cri-api/errors.js';

/** An image reference split the way Docker and containerd read it. */
export interface ImageReference {
  /** Registry host as written in the name ("docker.io", "localhost:5000"). */
  domain: string;
  /** Repository path inside the registry ("library/busybox"). */
  path: string;
  tag?: string;
  digest?: string;
}

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';

// Grammar of github.com/distribution/reference, anchored piece by piece.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const FULL_ID = /^[a-f0-9]{64}$/;
const MAX_NAME_LENGTH = 255;

/** The canonical string of a reference: "docker.io/library/busybox:latest" or "...@sha256:...". */
export function formatReference(ref: ImageReference): string {
  const name = `${ref.domain}/${ref.path}`;
  if (ref.digest) return `${name}@${ref.digest}`;
  return `${name}:${ref.tag ?? 'latest'}`;
}

/** "docker.io/library/busybox" for any reference of that repository. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/**
 * Parses and normalizes a reference like `docker pull` does: a missing domain
 * means docker.io, a one-component docker.io name gets "library/", no tag and
 * no digest means ":latest", and "name:tag@digest" keeps only the digest
 * (the digest is what gets pulled).
 */
export function parseReference(input: string): ImageReference {
  const bad = (why: string): never => {
    throw invalidArgument(`invalid image reference "${input}": ${why}`);
  };
  if (input === '') return bad('empty');
  if (input !== input.trim() || /\s/.test(input)) return bad('contains whitespace');
  if (FULL_ID.test(input)) return bad('a 64-hex-digit string is an image id, not a name');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!ANY_DIGEST.test(digest)) bad(`malformed digest "${digest}"`);
    if (!DIGEST.test(digest)) bad(`unsupported digest "${digest}" (only sha256 with 64 hex digits)`);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`malformed tag "${tag}"`);
  }

  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      domain = first;
      path = rest.slice(firstSlash + 1);
      if (!DOMAIN.test(domain)) bad(`malformed registry host "${domain}"`);
    }
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (path === '') bad('missing repository name');
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      bad(component !== component.toLowerCase() ? 'repository name must be lowercase' : `malformed repository path component "${component}"`);
    }
  }
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_REPO_PREFIX + path;
  if (domain.length + 1 + path.length > MAX_NAME_LENGTH) bad(`repository name longer than ${MAX_NAME_LENGTH} characters`);

  if (digest) return { domain, path, digest };
  return { domain, path, tag: tag ?? 'latest' };
}

export function normalizeReference(input: string): string {
  return formatReference(parseReference(input));
}
