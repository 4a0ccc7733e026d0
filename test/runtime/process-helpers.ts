// Helpers of the process driver's test files: specs, app queries, and what the
// OS says about the processes the driver started.
import { randomBytes, randomUUID } from "node:crypto";
import { readdirSync, readlinkSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join, sep } from "node:path";
import type { DatabaseSpec, EnsureResult } from "../../src/runtime/runtime.js";
import { withApp } from "./runtime-contract.js";

export { withApp };

export function newSpec(prefix: string): DatabaseSpec {
  return { projectId: randomUUID(), slug: `${prefix}-${randomBytes(2).toString("hex")}`, password: randomBytes(16).toString("hex") };
}

/** One query as the app role through the pooler. */
export async function appQuery(result: EnsureResult, spec: DatabaseSpec): Promise<void> {
  await withApp(result, spec, (client) => client.query("SELECT 1"));
}

export async function postmasterPid(pgdata: string): Promise<number> {
  return Number((await readFile(join(pgdata, "postmaster.pid"), "utf8")).split("\n")[0]);
}

/** The OS user an instance runs as (the owner of its data directory), as spawn options. */
export async function instanceUser(pgdata: string): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const { uid, gid } = await stat(pgdata);
  return { uid, gid };
}

/** The postmaster's arguments as the driver starts it in instance directory `dir`. */
export function postmasterArgs(dir: string): string[] {
  return ["-D", join(dir, "pgdata"), "-c", `config_file=${join(dir, "postgresql.conf")}`];
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of live processes whose working directory lies in `dir`: postmasters, their backends, poolers. */
export function processesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cwd = readlinkSync(`/proc/${name}/cwd`);
      if (cwd === dir || cwd.startsWith(dir + sep)) found.push(Number(name));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

/** Retries `check` until it passes or 20 s have gone by. */
export async function eventually(check: () => Promise<unknown>): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > until) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** The driver's "database ready" log line for `slug`. */
export function readyLine(logs: string, slug: string): Record<string, unknown> | undefined {
  return logs
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line["slug"] === slug && line["msg"] === "database ready")
    .at(-1);
}
