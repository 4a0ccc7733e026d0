// The service's command line exactly as `npm start` has it (package.json), so
// that tests and the benchmark start the same process an operator does: the
// same Node flags, no npm or shell in between (the pid is the service's own).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface ServiceCommand {
  /** This Node binary. */
  readonly command: string;
  readonly args: readonly string[];
}

export function serviceCommand(): ServiceCommand {
  const manifest = JSON.parse(readFileSync(`${REPO_ROOT}package.json`, "utf8")) as { scripts: { start: string } };
  const [program, ...args] = manifest.scripts.start.split(/\s+/);
  if (program !== "node") throw new Error(`package.json "start" must run node directly, not ${program}`);
  return { command: process.execPath, args };
}
