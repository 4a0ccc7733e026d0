// One supervised postmaster on one data directory, listening on a unix socket only.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type pg from "pg";
import type { Logger } from "../../../log.js";
import { ChildServer } from "./child-server.js";
import { rotateLogIfLarge } from "./log-rotation.js";
import type { RunAs } from "../host/os-user.js";
import { ensureDir, ensurePrivateDir, ownedBy, readableBy, writeServiceFileIfChanged } from "../host/owned-files.js";
import { attemptTimeoutMs, superuserClient } from "../sql/pg-clients.js";
import { runCommand } from "./run-command.js";
import type { PostgresBinaries } from "../host/postgres-binaries.js";
import { POSTGRES_PORT, renderHba, renderPostgresConfig } from "./postgres-settings.js";
import { stopStalePostmaster } from "./stale-process.js";

export interface PostgresServerOptions {
  /** Names the server in messages: a slug, or "the template cluster". */
  readonly name: string;
  readonly binaries: PostgresBinaries;
  readonly runAs: RunAs;
  readonly pgdata: string;
  /** The config file and pg_hba.conf, in a directory of the service's (see renderPostgresConfig). */
  readonly configFile: string;
  readonly hbaFile: string;
  readonly socketDir: string;
  /** When the socket dir lies outside the instance dir (long paths), it sits in a shared temp dir. */
  readonly socketDirShared: boolean;
  readonly logFile: string;
  readonly logger: Logger;
  /** See SupervisedProcessOptions.onSpawn (the instance's cgroup). */
  readonly onSpawn?: (pid: number) => Promise<void>;
  /**
   * Settings on the command line, which beat every config file, the data
   * directory's postgresql.auto.conf included: a recovery's (see replay-server.ts).
   */
  readonly commandLineSettings?: Readonly<Record<string, string>>;
}

export class PostgresServer extends ChildServer {
  constructor(private options: PostgresServerOptions) {
    super(
      {
        name: "postgres",
        command: options.binaries.postgres,
        args: postgresArgs(options),
        runAs: options.runAs,
        cwd: options.pgdata,
        outputFile: options.logFile,
        // SIGINT is PostgreSQL's fast shutdown (clean checkpoint, sessions ended),
        // SIGQUIT its immediate shutdown.
        stopSignals: ["SIGINT", "SIGQUIT", "SIGKILL"],
        stopStepMs: 30_000,
        logger: options.logger,
        ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
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
    this.process.relocate({
      args: postgresArgs(options),
      cwd: options.pgdata,
      outputFile: options.logFile,
      logger: options.logger,
      ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
    });
  }

  /** A connected superuser session once the server accepts one. */
  connect(database: string, deadline: number, signal: AbortSignal): Promise<pg.Client> {
    return this.waitUntil(
      async () => {
        const client = superuserClient(this.options.socketDir, database, attemptTimeoutMs(deadline));
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

  /**
   * Before every (re)start: the socket dir exists, our settings are current, no
   * stale postmaster holds the data dir. Nothing here writes inside the data
   * directory: it is the child's, and the service is root.
   */
  protected async prepare(): Promise<void> {
    const { pgdata, runAs, socketDir, configFile, hbaFile } = this.options;
    if (this.options.socketDirShared) await ensurePrivateDir(socketDir, runAs);
    else await ensureDir(socketDir, ownedBy(runAs));
    const generated = { durable: false };
    const readable = readableBy(runAs);
    await writeServiceFileIfChanged(configFile, renderPostgresConfig({ pgdata, socketDir, hbaFile }), readable, generated);
    await writeServiceFileIfChanged(hbaFile, renderHba(), readable, generated);
    await stopStalePostmaster(pgdata, this.options.logger);
    // No postmaster runs on this data dir now, and the socket dir is this
    // instance's alone: a socket lock file left here belongs to a dead one (a
    // relocated server cannot remove its own at shutdown), and PostgreSQL would
    // refuse to start should its pid have been reused meanwhile.
    // In the shared temp dir the child could swap its socket dir for a link
    // between our check and the unlink: there it removes the file itself.
    const lockFile = join(socketDir, `.s.PGSQL.${POSTGRES_PORT}.lock`);
    if (this.options.socketDirShared && runAs.switchUser) await runCommand("rm", ["-f", "--", lockFile], { runAs, timeoutMs: 10_000 });
    else await rm(lockFile, { force: true });
    await rotateLogIfLarge(this.options.logFile);
  }
}

/** The config file comes from the service's directory, not the data directory. */
function postgresArgs(options: PostgresServerOptions): string[] {
  const settings = Object.entries(options.commandLineSettings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`]);
  return ["-D", options.pgdata, "-c", `config_file=${options.configFile}`, ...settings];
}
