import { invalidArgument } from './errors.js';

/*
 * Request validation: each helper names the offending field in CRI's own
 * spelling (e.g. "config.metadata.name"), so the caller can fix its request.
 */

export function requireString(value: string | undefined | null, field: string): string {
  if (typeof value !== 'string' || value === '') throw invalidArgument(`${field} must be set`);
  return value;
}

export function requireMessage<T>(value: T | null | undefined, field: string): T {
  if (value === null || value === undefined) throw invalidArgument(`${field} must be set`);
  return value;
}

/** A container or sandbox id as kubelet passes it back to us: a non-empty id of safe characters. */
export function requireId(value: string | undefined | null, field: string): string {
  const id = requireString(value, field);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(id) || id.length > 128) throw invalidArgument(`${field} "${id}" is not a valid id`);
  return id;
}

/** Kubernetes object names: DNS-1123 subdomain-ish, which is what ends up in paths and labels. */
export function requireName(value: string | undefined | null, field: string): string {
  const name = requireString(value, field);
  if (name.length > 253 || !/^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/.test(name)) {
    throw invalidArgument(`${field} "${name}" must be letters, digits, '-', '_' or '.', start and end alphanumeric, at most 253 characters`);
  }
  return name;
}

export function requireNonNegative(value: number | string, field: string): number {
  const n = typeof value === 'string' ? Number(value) : value;
  if (!Number.isFinite(n) || n < 0 || !Number.isInteger(n)) throw invalidArgument(`${field} must be a non-negative integer, got ${String(value)}`);
  return n;
}

export function requireAbsolutePath(value: string | undefined | null, field: string): string {
  const p = requireString(value, field);
  // A NUL would cut the path short where the kernel reads it.
  if (p.includes('\0')) throw invalidArgument(`${field} must not contain a NUL byte`);
  if (!p.startsWith('/')) throw invalidArgument(`${field} "${p}" must be an absolute path`);
  if (p.split('/').includes('..')) throw invalidArgument(`${field} "${p}" must not contain ".."`);
  return p;
}

export function optionalAbsolutePath(value: string | undefined | null, field: string): string | undefined {
  return value ? requireAbsolutePath(value, field) : undefined;
}

/** Label and annotation maps: keys must be non-empty. */
export function requireStringMap(value: Record<string, string> | undefined | null, field: string): Record<string, string> {
  const map = value ?? {};
  for (const key of Object.keys(map)) if (key === '') throw invalidArgument(`${field} has an empty key`);
  return map;
}

/** A container's log_path: relative to its pod's log_directory and staying inside it. Empty means no log. */
export function optionalRelativePath(value: string | undefined | null, field: string): string | undefined {
  if (!value) return undefined;
  if (value.includes('\0')) throw invalidArgument(`${field} must not contain a NUL byte`);
  if (value.startsWith('/')) throw invalidArgument(`${field} "${value}" must be relative (to the pod's log_directory)`);
  if (value.split('/').includes('..')) throw invalidArgument(`${field} "${value}" must not contain ".."`);
  return value;
}

/**
 * Sysctl names as Kubernetes accepts them (dot- or slash-separated segments of
 * lowercase letters, digits, '-' and '_'), checked before a name is used anywhere.
 */
const SYSCTL_NAME = /^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$/;

export function requireSysctls(value: Record<string, string> | undefined | null, field: string): Record<string, string> {
  const map = value ?? {};
  for (const [name, v] of Object.entries(map)) {
    if (name.length > 253 || !SYSCTL_NAME.test(name)) throw invalidArgument(`${field}: ${JSON.stringify(name)} is not a sysctl name (dot-separated lowercase letters, digits, '-' and '_')`);
    if (/[\0\n]/.test(v)) throw invalidArgument(`${field}: the value of ${name} must not contain a NUL byte or a newline`);
  }
  return map;
}
