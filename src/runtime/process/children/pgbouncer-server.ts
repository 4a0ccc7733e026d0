// One supervised PgBouncer, its admin console, and the end-to-end check that
// an app's credentials get a query answered through it. PgBouncer does not
// bind its port: the service holds the listening socket (pooler-sockets.ts)
// and hands it over as fd 3 at every start (systemd socket activation, which
// PgBouncer built with systemd support takes instead of listen_addr), so the
// port stays the service's while PgBouncer restarts.
import type { Logger } from "../../../log.js";
import type { PoolerInfo } from "../../runtime.js";
import { RuntimeError } from "../../runtime.js";
import { ChildServer } from "./child-server.js";
import { rotateLogIfLarge } from "./log-rotation.js";
import type { RunAs } from "../host/os-user.js";
import type { Rows } from "../../runtime.js";
import { attemptTimeoutMs, loopbackClient, queryOnce, queryRows } from "../sql/pg-clients.js";
import type { PgbouncerBinary } from "../host/postgres-binaries.js";
import { POOLER_ADMIN_USER } from "./pgbouncer-config.js";
import { PortHoldError, type PoolerSockets } from "../host/pooler-sockets.js";
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
  readonly sockets: PoolerSockets;
  /** See SupervisedProcessOptions.onSpawn (the instance's cgroup). */
  readonly onSpawn?: (pid: number) => Promise<void>;
}

/**
 * sd_listen_fds() takes the sockets only when LISTEN_PID is its own pid, which
 * is known only once the child runs: the shell sets it and execs PgBouncer in
 * its place ($0 is PgBouncer's path, "$@" its arguments).
 */
export const SOCKET_ACTIVATION = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"';

export class PgbouncerServer extends ChildServer {
  private currentPort: number;
  /** The listening socket while the service holds it. */
  private readonly listening: { fd?: number };
  private lost = false;

  constructor(private readonly options: PgbouncerServerOptions) {
    const listening: { fd?: number } = {};
    super(
      {
        name: "pgbouncer",
        command: "/bin/sh",
        // Foreground, quiet on stderr: it logs to its logfile and the service
        // supervises it (no -d daemonising).
        args: ["-c", SOCKET_ACTIVATION, options.binary.path, "-q", options.iniFile],
        passFds: () => (listening.fd === undefined ? [] : [listening.fd]),
        ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
        runAs: options.runAs,
        cwd: options.dir,
        // SIGINT waits for transactions in flight to finish, SIGTERM does not.
        stopSignals: ["SIGINT", "SIGTERM", "SIGKILL"],
        stopStepMs: 10_000,
        logger: options.logger,
      },
      { title: "PgBouncer", owner: options.slug, logFile: options.logFile },
    );
    this.listening = listening;
    this.currentPort = options.port;
  }

  /** Where it listens. */
  get port(): number {
    return this.currentPort;
  }

  /** Changed only while stopped (PgBouncer cannot move its port on RELOAD); the old port is let go. */
  set port(port: number) {
    if (port === this.currentPort) return;
    this.releasePort();
    this.currentPort = port;
    this.lost = false;
  }

  /** Another process held the port when the service last tried to take it: this database is not ready. */
  get portLost(): boolean {
    return this.lost;
  }

  /** Stops PgBouncer and lets its port go: the database is removed, moved, or the service is closing. */
  override async stop(): Promise<void> {
    await super.stop();
    this.releasePort();
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
    // 1.21 lists it (as 0) although sota-db leaves it off there.
    const preparedStatementsSupported = Number(config.get("max_prepared_statements") ?? 0) > 0;
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
        const client = loopbackClient(this.port, user, password, database, attemptTimeoutMs(deadline));
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
    // A PgBouncer left by a killed run of the service still has the port's old socket.
    await stopStalePgbouncer(this.options.pidFile, this.options.iniFile, this.options.logger);
    await rotateLogIfLarge(this.options.logFile);
    this.holdPort();
  }

  /** Takes the port for the database's life, once; restarts reuse the socket. */
  private holdPort(): void {
    if (this.listening.fd !== undefined) return;
    const { port } = this;
    try {
      this.listening.fd = this.options.sockets.hold(port);
      this.lost = false;
    } catch (error) {
      if (!(error instanceof PortHoldError)) throw error;
      if (error.code !== "EADDRINUSE") {
        throw new RuntimeError("failed", `cannot listen on pooler port ${port} of ${this.options.slug} (${error.code})`);
      }
      this.lost = true;
      const message = `pooler port ${port} of ${this.options.slug} is held by another process on 127.0.0.1; the database is not ready until that port is free and Ensure runs again`;
      // Apps that still use the URL are talking to that process: the operator must hear of it.
      this.options.logger.error({ process: "pgbouncer", port }, `${message} (apps connecting to it may be sending that process their password)`);
      throw new RuntimeError("unavailable", message);
    }
  }

  private releasePort(): void {
    if (this.listening.fd === undefined) return;
    this.listening.fd = undefined;
    this.options.sockets.release(this.currentPort);
  }
}
