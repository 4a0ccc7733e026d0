// One supervised postmaster on one data directory, listening on a unix socket
// only. Readiness is polled directly with short intervals: pg_ctl -w sleeps in
// coarse steps that would dominate the time to a new database.
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import type pg from "pg";
import type { Logger } from "../../log.js";
import { RuntimeError } from "../runtime.js";
import type { RunAs } from "./os-user.js";
import { ensureOwnedDir, ensurePrivateDir, readIfExists, writeOwnedFileIfChanged } from "./owned-files.js";
import { superuserClient } from "./pg-clients.js";
import type { PostgresBinaries } from "./postgres-binaries.js";
import { INCLUDE_LINE, renderHba, renderPostgresSettings, SETTINGS_FILE } from "./postgres-settings.js";
import { stopStalePostmaster } from "./stale-process.js";
import { rotateLogIfLarge } from "./log-rotation.js";
import { pause } from "./pause.js";
import { SupervisedProcess } from "./supervised-process.js";

const POLL_MS = 15;

export interface PostgresServerOptions {
  /** Names the server in messages: a slug, or "template". */
  readonly name: string;
  readonly binaries: PostgresBinaries;
  readonly runAs: RunAs;
  readonly pgdata: string;
  readonly socketDir: string;
  /** When the socket dir lies outside the instance dir (long paths), it sits in a shared temp dir. */
  readonly socketDirShared: boolean;
  readonly logFile: string;
  readonly logger: Logger;
}

export class PostgresServer {
  readonly process: SupervisedProcess;

  constructor(private readonly options: PostgresServerOptions) {
    this.process = new SupervisedProcess({
      name: "postgres",
      command: options.binaries.postgres,
      args: ["-D", options.pgdata],
      runAs: options.runAs,
      cwd: options.pgdata,
      outputFile: options.logFile,
      // SIGINT is PostgreSQL's fast shutdown (clean checkpoint, sessions ended),
      // SIGQUIT its immediate shutdown.
      stopSignals: ["SIGINT", "SIGQUIT", "SIGKILL"],
      stopStepMs: 30_000,
      prepare: () => this.prepare(),
      logger: options.logger,
    });
  }

  get running(): boolean {
    return this.process.running;
  }

  start(): Promise<void> {
    return this.process.start();
  }

  stop(): Promise<void> {
    return this.process.stop();
  }

  /**
   * A connected superuser session once the server accepts one. While the
   * process is not yet supervised, its exit ends the wait at once (a start
   * failure); a supervised one may be between a crash and its restart.
   */
  async connect(database: string, deadline: number, signal: AbortSignal): Promise<pg.Client> {
    let lastError: unknown;
    for (;;) {
      signal.throwIfAborted();
      if (!this.process.running && !this.process.supervising) {
        throw new RuntimeError("failed", `PostgreSQL for ${this.options.name} exited while starting; see ${this.options.logFile}`);
      }
      const client = superuserClient(this.options.socketDir, database);
      try {
        await client.connect();
        return client;
      } catch (error) {
        lastError = error;
        await client.end().catch(() => undefined);
      }
      if (Date.now() >= deadline) {
        throw new RuntimeError(
          "timeout",
          `PostgreSQL for ${this.options.name} did not accept connections in time (${describe(lastError)}); see ${this.options.logFile}`,
        );
      }
      await pause(POLL_MS, signal);
    }
  }

  /** Before every (re)start: the socket dir exists, our settings are current, no stale postmaster holds the data dir. */
  private async prepare(): Promise<void> {
    const { pgdata, runAs, socketDir } = this.options;
    if (this.options.socketDirShared) await ensurePrivateDir(socketDir, runAs);
    else await ensureOwnedDir(socketDir, runAs, 0o700);
    const conf = join(pgdata, "postgresql.conf");
    const current = (await readIfExists(conf)) ?? "";
    if (!current.split("\n").includes(INCLUDE_LINE)) await appendFile(conf, `\n${INCLUDE_LINE}\n`);
    await writeOwnedFileIfChanged(join(pgdata, SETTINGS_FILE), renderPostgresSettings(socketDir), runAs, 0o600);
    await writeOwnedFileIfChanged(join(pgdata, "pg_hba.conf"), renderHba(), runAs, 0o600);
    await stopStalePostmaster(pgdata, this.options.logger);
    await rotateLogIfLarge(this.options.logFile);
  }
}

function describe(error: unknown): string {
  if (error && typeof error === "object" && "code" in error && typeof error.code === "string") return error.code;
  return error instanceof Error ? error.message : "no answer";
}
