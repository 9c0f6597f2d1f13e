/** Small pieces every module shares: the atomic file write (with the daemon's fsync rule) and the keyed lock. */
export { isAtomicWriteTemp, replaceFileAtomic, writeFileAtomic, type AtomicWriteOptions, type Durability } from './atomic-write.js';
export { KeyedLock } from './keyed-lock.js';
