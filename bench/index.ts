/** The bench harness (`npm run bench`); not part of the product or the test suite. */
export { main, parseArgs, type BenchOptions } from './run.js';
export type { CaseName, Contender, ContenderName } from './contender.js';
