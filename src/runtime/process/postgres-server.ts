// One supervised postmaster on one data directory, listening on a unix socket only.
import { appendFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type pg from "pg";
import type { Logger } from "../../log.js";
import { ChildServer } from "./child-server.js";
import { rotateLogIfLarge } from "./log-rotation.js";
import type { RunAs } from "./os-user.js";
import { ensureOwnedDir, ensurePrivateDir, readIfExists, writeOwnedFileIfChanged } from "./owned-files.js";
import { superuserClient } from "./pg-clients.js";
import type { PostgresBinaries } from "./postgres-binaries.js";
import { INCLUDE_LINE, POSTGRES_PORT, renderHba, renderPostgresSettings, SETTINGS_FILE } from "./postgres-settings.js";
import { stopStalePostmaster } from "./stale-process.js";

export interface PostgresServerOptions {
  /** Names the server in messages: a slug, or "the template cluster". */
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

export class PostgresServer extends ChildServer {
  constructor(private options: PostgresServerOptions) {
    super(
      {
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
        logger: options.logger,
      },
      { title: "PostgreSQL", owner: options.name, logFile: options.logFile },
    );
  }

  get socketDir(): string {
    return this.options.socketDir;
  }

  /**
   * After the directory of a running server was renamed (a warm instance given
   * to a project): connect through the new paths, restart from them. The
   * running postmaster keeps the absolute path it was started with (pg_control
   * is written through it at every checkpoint, config files are re-read
   * through it), so whoever renames must leave a symlink at the old path for
   * as long as this process lives.
   */
  relocate(options: PostgresServerOptions): void {
    this.options = options;
    this.identity = { title: "PostgreSQL", owner: options.name, logFile: options.logFile };
    this.process.relocate({ args: ["-D", options.pgdata], cwd: options.pgdata, outputFile: options.logFile, logger: options.logger });
  }

  /** A connected superuser session once the server accepts one. */
  connect(database: string, deadline: number, signal: AbortSignal): Promise<pg.Client> {
    return this.waitUntil(
      async () => {
        const client = superuserClient(this.options.socketDir, database);
        try {
          await client.connect();
          return client;
        } catch (error) {
          await client.end().catch(() => undefined);
          throw error;
        }
      },
      "did not accept connections",
      deadline,
      signal,
    );
  }

  /** Before every (re)start: the socket dir exists, our settings are current, no stale postmaster holds the data dir. */
  protected async prepare(): Promise<void> {
    const { pgdata, runAs, socketDir } = this.options;
    if (this.options.socketDirShared) await ensurePrivateDir(socketDir, runAs);
    else await ensureOwnedDir(socketDir, runAs, 0o700);
    const conf = join(pgdata, "postgresql.conf");
    const current = (await readIfExists(conf)) ?? "";
    if (!current.split("\n").includes(INCLUDE_LINE)) await appendFile(conf, `\n${INCLUDE_LINE}\n`);
    const generated = { durable: false };
    await writeOwnedFileIfChanged(join(pgdata, SETTINGS_FILE), renderPostgresSettings(socketDir), runAs, 0o600, generated);
    await writeOwnedFileIfChanged(join(pgdata, "pg_hba.conf"), renderHba(), runAs, 0o600, generated);
    await stopStalePostmaster(pgdata, this.options.logger);
    // No postmaster runs on this data dir now, and the socket dir is this
    // instance's alone: a socket lock file left here belongs to a dead one (a
    // relocated server cannot remove its own at shutdown), and PostgreSQL would
    // refuse to start should its pid have been reused meanwhile.
    await rm(join(socketDir, `.s.PGSQL.${POSTGRES_PORT}.lock`), { force: true });
    await rotateLogIfLarge(this.options.logFile);
  }
}
