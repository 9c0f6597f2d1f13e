/**
 * Per-pod runsc flags: `dev.gvisor.flag.<name>` pod annotations, honoured
 * only for names on the operator's allow-list (option gvisor-flag-allowlist).
 *
 * runsc reads these annotations from a container's OCI spec. Some it applies
 * on its own (runsc 20240729 takes host-uds, strace, debug... without being
 * asked), the rest only with the global --allow-flag-override. So gvisor-cri
 * never copies a pod annotation into a spec unchecked: the allow-list here is
 * the one gate, and --allow-flag-override is passed only for pods that carry
 * allowed flags.
 */
import { invalidArgument } from '../../cri-api/errors.js';

export const FLAG_ANNOTATION_PREFIX = 'dev.gvisor.flag.';

/**
 * Flags gvisor-cri sets itself or relies on: a pod overriding them would
 * break the daemon's bookkeeping (root, network, overlay2) or escape the
 * operator's own settings, so they cannot be allow-listed.
 */
export const DAEMON_MANAGED_FLAGS: readonly string[] = ['root', 'network', 'overlay2', 'platform', 'allow-flag-override', 'pod-init-config', 'log', 'debug-log'];

const FLAG_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/** Why `name` cannot be on the allow-list, or undefined when it can. */
export function allowlistEntryProblem(name: string): string | undefined {
  if (!FLAG_NAME.test(name)) return `"${name}" is not a runsc flag name (letters, digits, "-" and "_", without leading dashes)`;
  if (DAEMON_MANAGED_FLAGS.includes(name)) return `"${name}" is set by gvisor-cri itself and cannot be overridden per pod`;
  return undefined;
}

/**
 * The pod's runsc flags from its annotations, in annotation order. A flag
 * not on `allowlist` fails the whole pod with INVALID_ARGUMENT naming the
 * annotation, the allowed names and the option that allows more.
 */
export function podRunscFlags(annotations: Readonly<Record<string, string>>, allowlist: readonly string[]): Record<string, string> {
  const flags: Record<string, string> = {};
  const refused: string[] = [];
  for (const [key, value] of Object.entries(annotations)) {
    if (!key.startsWith(FLAG_ANNOTATION_PREFIX)) continue;
    const name = key.slice(FLAG_ANNOTATION_PREFIX.length);
    if (!allowlist.includes(name)) {
      refused.push(key);
      continue;
    }
    if (value.trim() === '' || /[\0\n]/.test(value)) throw invalidArgument(`annotation ${key}: needs a value for runsc --${name}, got ${JSON.stringify(value)}`);
    flags[name] = value;
  }
  if (refused.length > 0) {
    const allowed = allowlist.length > 0 ? `allowed flags: ${allowlist.join(', ')}` : 'no runsc flag may be set per pod on this node';
    throw invalidArgument(`annotation ${refused.join(', ')}: runsc flag not on this node's allow-list (${allowed}); an operator can allow a flag with the gvisor-flag-allowlist option`);
  }
  return flags;
}

/** The spec annotations that carry `flags` to runsc. */
export function flagAnnotations(flags: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(flags).map(([name, value]) => [`${FLAG_ANNOTATION_PREFIX}${name}`, value]));
}

/**
 * Extra global flags of a runsc call for a container of a pod with `flags`.
 * `create` and `start` read the spec's annotations and need only the
 * permission; `exec` reads no spec, so it gets the flags themselves
 * (checked with runsc 20240729: net-raw reaches an exec only this way).
 */
export function runscCallFlags(flags: Readonly<Record<string, string>> | undefined, call: 'spec' | 'exec'): string[] {
  if (!flags || Object.keys(flags).length === 0) return [];
  if (call === 'spec') return ['--allow-flag-override'];
  return Object.entries(flags).map(([name, value]) => `--${name}=${value}`);
}

/** A running pod's runsc flags: its flag annotations, checked when the pod was made. */
export function recordedRunscFlags(annotations: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(annotations)) if (key.startsWith(FLAG_ANNOTATION_PREFIX)) out[key.slice(FLAG_ANNOTATION_PREFIX.length)] = value;
  return out;
}
