// Runs a host program to completion, optionally as the unprivileged run-as
// user. Children get a clean environment: PG* variables of the service (PGHOST,
// PGPASSWORD, ...) must never redirect or authenticate our own tools.
import { execFile } from "node:child_process";
import type { RunAs } from "../host/os-user.js";

export interface RunCommandOptions {
  readonly runAs?: RunAs | undefined;
  readonly cwd?: string;
  readonly input?: string;
  readonly timeoutMs?: number;
}

export interface CommandOutput {
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Fails with the exit code and stderr's last line (the reason: "No space left
 * on device"). Only programs that are never handed a secret (cp, chown, initdb,
 * getent, useradd, userdel, kill, rm, sync, test) run through here, so that
 * line cannot hold one.
 */
export class CommandFailedError extends Error {
  override readonly name = "CommandFailedError";
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderr: string,
  ) {
    const reason = stderr.trim().split("\n").at(-1)?.trim().slice(0, 300);
    super(`${command} failed (${signal ? `signal ${signal}` : `exit code ${String(exitCode)}`})${reason ? `: ${reason}` : ""}`);
  }
}

export function childEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env["PATH"] ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    LANG: "C.UTF-8",
    LC_ALL: "C.UTF-8",
    TZ: process.env["TZ"] ?? "UTC",
  };
}

export function userSpawnOptions(runAs: RunAs | undefined): { uid?: number; gid?: number } {
  return runAs?.switchUser ? { uid: runAs.uid, gid: runAs.gid } : {};
}

export function runCommand(command: string, args: readonly string[], options: RunCommandOptions = {}): Promise<CommandOutput> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      {
        ...userSpawnOptions(options.runAs),
        cwd: options.cwd ?? "/",
        env: childEnv(),
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 8 * 1024 * 1024,
        encoding: "utf8",
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ stdout, stderr });
          return;
        }
        const code = typeof error.code === "number" ? error.code : null;
        if (code === null && typeof error.code === "string") {
          reject(error);
          return;
        }
        reject(new CommandFailedError(command.split("/").pop() ?? command, code, error.signal ?? null, stderr));
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}
