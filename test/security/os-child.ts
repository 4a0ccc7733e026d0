// Helpers of the security tests that act as an instance's unprivileged OS user:
// whoever owns its data directory, which is what PostgreSQL and PgBouncer run as.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { stat } from "node:fs/promises";

export interface OsIdentity {
  readonly uid: number;
  readonly gid: number;
}

/** The OS user an instance's processes run as: the owner of its data directory. */
export async function ownerOf(path: string): Promise<OsIdentity> {
  const { uid, gid } = await stat(path);
  return { uid, gid };
}

export interface Outcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program as `who` (the attacker), never throwing: the outcome says whether the kernel let it. */
export function runAs(who: OsIdentity, command: string, args: readonly string[], cwd = "/"): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(command, args, { uid: who.uid, gid: who.gid, cwd, env: { PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** The real uid of a live process, from /proc. */
export function processUid(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("Uid:"));
  return Number(line?.split(/\s+/)[1]);
}

/** Log lines of `slug` with message `msg` so far; of one child process (e.g. "postgres") when `process` is given. */
export function countLines(logs: string, slug: string, msg: string, process?: string): number {
  return logs
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line["slug"] === slug && line["msg"] === msg && (process === undefined || line["process"] === process)).length;
}
