/** Command-line words → flags and positionals, with the few shapes crictl users type (-it, -o json, --tail=5). */
import { usageError } from './client.js';

export interface FlagSpec {
  /** Canonical name (long form, no dashes). */
  name: string;
  /** One-letter alias, without the dash. */
  short?: string;
  /** Takes a value (otherwise a boolean switch). */
  value?: boolean;
}

export interface Parsed {
  flags: Map<string, string>;
  positionals: string[];
}

/**
 * Parses `argv` against `specs`. With `stopAtPositional` everything from the
 * first positional on is kept as is (exec's command line has its own flags).
 */
export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[], stopAtPositional = false): Parsed {
  const flags = new Map<string, string>();
  const positionals: string[] = [];
  const byLong = (n: string): FlagSpec | undefined => specs.find((s) => s.name === n);
  const byShort = (c: string): FlagSpec | undefined => specs.find((s) => s.short === c);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (stopAtPositional) {
        positionals.push(...argv.slice(i));
        break;
      }
      positionals.push(arg);
      continue;
    }
    const takeValue = (spec: FlagSpec, inline: string | undefined, shown: string): void => {
      if (!spec.value) {
        if (inline !== undefined) throw usageError(`flag ${shown} takes no value`);
        flags.set(spec.name, 'true');
        return;
      }
      if (inline !== undefined) {
        flags.set(spec.name, inline);
        return;
      }
      const next = argv[i + 1];
      if (next === undefined) throw usageError(`flag ${shown} needs a value`);
      flags.set(spec.name, next);
      i++;
    };
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      const spec = byLong(name);
      if (!spec) throw usageError(`unknown flag --${name}`);
      takeValue(spec, eq >= 0 ? arg.slice(eq + 1) : undefined, `--${name}`);
      continue;
    }
    const letters = arg.slice(1);
    const single = byShort(letters.charAt(0));
    if (letters.length === 1 || single?.value) {
      // -o json, -ojson, -o=json, -t 5
      if (!single) throw usageError(`unknown flag -${letters.charAt(0)}`);
      takeValue(single, letters.length > 1 ? letters.slice(1).replace(/^=/, '') : undefined, `-${single.short}`);
      continue;
    }
    // Bundled switches: -it, -af.
    for (const c of letters) {
      const spec = byShort(c);
      if (!spec) throw usageError(`unknown flag -${c} (in ${arg})`);
      if (spec.value) throw usageError(`flag -${c} needs a value and cannot be bundled in ${arg}`);
      flags.set(spec.name, 'true');
    }
  }
  return { flags, positionals };
}

/** A flag's value as a non-negative integer, or `fallback` when absent. */
export function intFlag(p: Parsed, name: string, fallback: number): number {
  const raw = p.flags.get(name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw usageError(`--${name} must be a non-negative integer, got "${raw}"`);
  return Number(raw);
}
