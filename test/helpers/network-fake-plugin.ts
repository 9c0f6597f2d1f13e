import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Writes a CNI plugin (a small node script) under `name` into binDir. It
 * appends every call ({command, env, stdin}) as a JSON line to its config's
 * "logFile", and for ADD prints its config's "result", else the prevResult.
 * Config knobs: "fail" ({code,msg,details}: printed with exit 1), "sleepMs" (ADD only).
 */
export async function writeFakePlugin(binDir: string, name: string): Promise<void> {
  const script = `#!${process.execPath}
const fs = require('node:fs');
const stdin = fs.readFileSync(0, 'utf8');
const conf = JSON.parse(stdin);
const env = {};
for (const k of Object.keys(process.env)) if (k.startsWith('CNI_')) env[k] = process.env[k];
fs.appendFileSync(conf.logFile, JSON.stringify({ plugin: ${JSON.stringify(name)}, command: env.CNI_COMMAND, env, stdin: conf }) + '\\n');
const finish = () => {
  if (conf.fail && env.CNI_COMMAND === 'ADD') { process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, ...conf.fail })); process.exit(1); }
  if (env.CNI_COMMAND === 'ADD') process.stdout.write(JSON.stringify(conf.result ?? conf.prevResult));
};
if (conf.sleepMs && env.CNI_COMMAND === 'ADD') setTimeout(finish, conf.sleepMs); else finish();
`;
  const path = join(binDir, name);
  await writeFile(path, script);
  await chmod(path, 0o755);
}
