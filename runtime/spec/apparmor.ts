/**
 * The host's AppArmor, probed for CreateContainer: gVisor does not apply
 * profiles, but a `Localhost` profile that is not loaded still fails the
 * container, as under containerd.
 */
import { readFile } from 'node:fs/promises';

/** Names of the AppArmor profiles loaded on the host; undefined when AppArmor is off (then profiles are only noted). */
export async function loadedAppArmorProfiles(): Promise<Set<string> | undefined> {
  const enabled = await readFile('/sys/module/apparmor/parameters/enabled', 'utf8').catch(() => 'N');
  if (!enabled.startsWith('Y')) return undefined;
  const text = await readFile('/sys/kernel/security/apparmor/profiles', 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  // Lines are "<name> (<mode>)".
  return new Set(text.split('\n').filter((l) => l.trim() !== '').map((l) => l.replace(/ \([^)]*\)\s*$/, '')));
}
