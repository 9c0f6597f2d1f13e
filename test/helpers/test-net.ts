/**
 * The one allocator of test networks: every test world that makes a CNI
 * bridge asks here for its bridge name and /24 subnet, so test files that
 * run at once (and the runs of other engineers on the same machine) never
 * share either. A network is claimed with an exclusive-create file named
 * after its slot under the host's temp dir, holding the claiming pid; it is
 * released when the process exits, and a claim whose process is gone
 * (a killed run) is taken over. The bridge named after a slot belongs to
 * the slot's holder: it is deleted when the slot is claimed (a killed run
 * left it) and when its holder exits, so runs leave no bridges behind.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestNet {
  slot: number;
  /** At most 15 characters, as Linux wants interface names. */
  bridge: string;
  /** The first three octets, e.g. "10.201.37". */
  prefix: string;
  subnet: string;
  gateway: string;
}

const CLAIMS_DIR = join(tmpdir(), 'gvcri-test-nets');
/** 10.200.0.0 to 10.255.249.0: 56 × 250 subnets, well clear of the default network's 10.88.0.0/16. */
const SLOTS = 56 * 250;

const mine = new Map<string, TestNet>();
let exitHookSet = false;

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /s.test(stat);
  } catch {
    return false;
  }
}

/** Creates `path` holding our pid; false when it exists. */
function createExclusive(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  writeSync(fd, String(process.pid));
  closeSync(fd);
  return true;
}

function holder(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    return Number.isInteger(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes a slot whose holder is gone. The `.takeover` file makes one
 * process at a time do it; a holder that has not yet written its pid reads
 * as unknown and is left alone.
 */
function takeOver(path: string): boolean {
  const lock = `${path}.takeover`;
  if (!createExclusive(lock)) {
    const pid = holder(lock);
    if (pid === undefined || alive(pid)) return false;
    rmSync(lock, { force: true });
    return false;
  }
  try {
    const pid = holder(path);
    if (pid === undefined || alive(pid)) return false;
    rmSync(path, { force: true });
    return createExclusive(path);
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Synchronous, as the exit hook must be; a missing bridge is what we want. */
function deleteBridge(name: string): void {
  spawnSync('ip', ['link', 'del', name], { stdio: 'ignore' });
}

function netOf(slot: number): TestNet {
  const prefix = `10.${200 + Math.floor(slot / 250)}.${slot % 250}`;
  return { slot, bridge: `gvt${slot}`, prefix, subnet: `${prefix}.0/24`, gateway: `${prefix}.1` };
}

/**
 * A network for this process to use alone. `key` names it within the
 * process: asking again with the same key (a daemon restarted by the same
 * test file) gives the same network.
 */
export function allocateTestNet(key: string): TestNet {
  const known = mine.get(key);
  if (known) return known;
  mkdirSync(CLAIMS_DIR, { recursive: true });
  // Start where this pid points, so concurrent processes rarely contend for one slot.
  const start = process.pid % SLOTS;
  for (let i = 0; i < SLOTS; i++) {
    const slot = (start + i) % SLOTS;
    const path = join(CLAIMS_DIR, `slot-${slot}`);
    if (!createExclusive(path) && !takeOver(path)) continue;
    const net = netOf(slot);
    deleteBridge(net.bridge);
    mine.set(key, net);
    if (!exitHookSet) {
      exitHookSet = true;
      process.on('exit', () => {
        for (const n of mine.values()) {
          deleteBridge(n.bridge);
          rmSync(join(CLAIMS_DIR, `slot-${n.slot}`), { force: true });
        }
      });
    }
    return net;
  }
  throw new Error(`no free test network: all ${SLOTS} slots under ${CLAIMS_DIR} are claimed by live processes`);
}
