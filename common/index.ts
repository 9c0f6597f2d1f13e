/** Small pieces every module shares: the atomic file write (with the daemon's fsync rule), the keyed lock, a concurrency limit, independent steps run side by side, and the launcher of short-lived tools. */
export { fsyncPath, isAtomicWriteTemp, replaceFileAtomic, writeFileAtomic, type AtomicWriteOptions, type Durability } from './atomic-write.js';
export { KeyedLock } from './keyed-lock.js';
export { ConcurrencyLimit } from './concurrency-limit.js';
export { sideBySide } from './side-by-side.js';
export { runCaptured, stripFinalNewline, type CaptureRequest, type CaptureResult, type Launcher } from './launcher.js';
