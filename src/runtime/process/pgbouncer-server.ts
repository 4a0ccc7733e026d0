// One supervised PgBouncer, its admin console, and the end-to-end check that
// an app's credentials get a query answered through it.
import type { Logger } from "../../log.js";
import type { PoolerInfo } from "../runtime.js";
import { RuntimeError } from "../runtime.js";
import { ChildServer } from "./child-server.js";
import { rotateLogIfLarge } from "./log-rotation.js";
import type { RunAs } from "./os-user.js";
import { loopbackClient, queryOnce, queryRows, type Rows } from "./pg-clients.js";
import type { PgbouncerBinary } from "./postgres-binaries.js";
import { POOLER_ADMIN_USER } from "./pgbouncer-config.js";
import { canBind } from "./port-probe.js";
import { stopStalePgbouncer } from "./stale-process.js";

export interface PgbouncerServerOptions {
  readonly slug: string;
  readonly binary: PgbouncerBinary;
  readonly runAs: RunAs;
  readonly dir: string;
  readonly iniFile: string;
  readonly pidFile: string;
  readonly logFile: string;
  readonly logger: Logger;
  readonly port: number;
}

export class PgbouncerServer extends ChildServer {
  /** Where it listens; changed only while stopped (PgBouncer cannot move its port on RELOAD). */
  port: number;

  constructor(private readonly options: PgbouncerServerOptions) {
    super(
      {
        name: "pgbouncer",
        command: options.binary.path,
        // Foreground, quiet on stderr: it logs to its logfile and the service
        // supervises it (no -d daemonising).
        args: ["-q", options.iniFile],
        runAs: options.runAs,
        cwd: options.dir,
        // SIGINT waits for transactions in flight to finish, SIGTERM does not.
        stopSignals: ["SIGINT", "SIGTERM", "SIGKILL"],
        stopStepMs: 10_000,
        logger: options.logger,
      },
      { title: "PgBouncer", owner: options.slug, logFile: options.logFile },
    );
    this.port = options.port;
  }

  /** One command on the admin console (simple query protocol, as the console requires). */
  console(adminPassword: string, command: string): Promise<Rows> {
    return queryOnce(loopbackClient(this.port, POOLER_ADMIN_USER, adminPassword, "pgbouncer"), command);
  }

  /**
   * Applies a rewritten config and userlist. The console's RELOAD answers once
   * they are in effect; should the console refuse us (its admin secret itself
   * was rewritten), SIGHUP does the same without a login.
   */
  async reload(adminPassword: string): Promise<void> {
    try {
      await this.console(adminPassword, "RELOAD");
    } catch (error) {
      const pid = this.process.pid;
      if (pid === undefined) throw error;
      this.options.logger.warn({ process: "pgbouncer" }, "RELOAD on the console failed; reloading with SIGHUP");
      process.kill(pid, "SIGHUP");
    }
  }

  /** The settings as the running PgBouncer reports them, once its console answers. */
  async poolerInfo(adminPassword: string, deadline: number, signal: AbortSignal): Promise<PoolerInfo> {
    const rows = await this.waitUntil(() => this.console(adminPassword, "SHOW CONFIG"), "answered no console command", deadline, signal);
    const config = new Map(rows.map((row) => [row["key"] ?? "", row["value"] ?? ""]));
    const preparedStatementsSupported = config.has("max_prepared_statements");
    return {
      version: this.options.binary.version,
      poolMode: config.get("pool_mode") ?? "",
      defaultPoolSize: Number(config.get("default_pool_size")),
      maxClientConn: Number(config.get("max_client_conn")),
      preparedStatementsSupported,
      maxPreparedStatements: preparedStatementsSupported ? Number(config.get("max_prepared_statements")) : 0,
    };
  }

  /**
   * Waits until the app role gets an answer through the pooler and returns the
   * server's version. Connection refusals and "server not ready" answers are
   * retried; a wrong password is too, since the userlist may just have been
   * reloaded.
   */
  waitForAppQuery(user: string, password: string, database: string, deadline: number, signal: AbortSignal): Promise<string> {
    return this.waitUntil(
      async () => {
        const client = loopbackClient(this.port, user, password, database);
        try {
          await client.connect();
          const rows = await queryRows(client, "SELECT current_setting('server_version') AS version");
          return rows[0]?.["version"] ?? "";
        } finally {
          await client.end().catch(() => undefined);
        }
      },
      "answered no query",
      deadline,
      signal,
    );
  }

  protected async prepare(): Promise<void> {
    await stopStalePgbouncer(this.options.pidFile, this.options.iniFile, this.options.logger);
    await rotateLogIfLarge(this.options.logFile);
    const port = this.port;
    if (!(await canBind(port))) {
      throw new RuntimeError("unavailable", `pooler port ${port} for ${this.options.slug} is in use by another process on 127.0.0.1`);
    }
  }
}
