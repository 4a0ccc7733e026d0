// Prometheus metrics (prom-client), on a registry of our own so tests can run
// several services in one process. Labels never carry a secret: method names,
// codes, states, project ids and, for a database in trouble only, its slug.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { DatabaseFigures, PoolerTotals } from "./figures.js";
import { OffsiteMetrics } from "./offsite/offsite-metrics.js";

/** One database's figures as a scrape sees them; none when it did not answer. */
export interface DatabaseSample {
  readonly projectId: string;
  readonly figures?: DatabaseFigures;
}

/** PgBouncer's SHOW STATS totals, as Prometheus counters: metric name, help, field. */
const POOLER_TOTALS: ReadonlyArray<readonly [string, string, keyof PoolerTotals]> = [
  ["sota_pooler_transactions_total", "Transactions the pooler ran (SHOW STATS total_xact_count).", "transactions"],
  ["sota_pooler_queries_total", "Queries the pooler ran (SHOW STATS total_query_count).", "queries"],
  ["sota_pooler_received_bytes_total", "Bytes the pooler received from clients (SHOW STATS total_received).", "receivedBytes"],
  ["sota_pooler_sent_bytes_total", "Bytes the pooler sent to clients (SHOW STATS total_sent).", "sentBytes"],
  ["sota_pooler_transaction_seconds_total", "Time spent in transactions (SHOW STATS total_xact_time).", "transactionSeconds"],
  ["sota_pooler_query_seconds_total", "Time spent running queries (SHOW STATS total_query_time).", "querySeconds"],
  ["sota_pooler_wait_seconds_total", "Time clients spent waiting for a server connection (SHOW STATS total_wait_time).", "waitSeconds"],
];

/** A scrape reuses figures read this recently: several scrapers (or replicas' Prometheus) do not multiply the reads. */
const FIGURES_CACHE_MS = 5_000;

export class Metrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: "sota_rpc_requests_total",
    help: "RPCs handled, by method and result code.",
    labelNames: ["method", "code"] as const,
    registers: [this.registry],
  });

  readonly requestDuration = new Histogram({
    name: "sota_rpc_duration_seconds",
    help: "RPC latency, by method and result code.",
    labelNames: ["method", "code"] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  readonly ensureDuration = new Histogram({
    name: "sota_ensure_duration_seconds",
    help: "Time for Ensure to bring a database to a working query through its pooler.",
    labelNames: ["runtime", "outcome"] as const,
    buckets: [0.005, 0.05, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });

  private countDatabases: () => Promise<Record<string, number>> = async () => ({});

  readonly databases: Gauge<"state"> = new Gauge({
    name: "sota_databases",
    help: "Managed databases, by state.",
    labelNames: ["state"] as const,
    registers: [this.registry],
    // Read from the store at scrape time, so the gauge cannot drift from the truth.
    collect: async () => {
      const counts = await this.countDatabases();
      for (const state of ["provisioning", "ready", "failed"]) this.databases.set({ state }, counts[state] ?? 0);
    },
  });

  readonly backupFailures = new Counter({
    name: "sota_backup_failures_total",
    help: "Backups that failed, by kind.",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });

  readonly backupLastSuccess = new Gauge({
    name: "sota_backup_last_success_timestamp_seconds",
    help: "Finish time of each project's newest succeeded backup.",
    labelNames: ["project_id"] as const,
    registers: [this.registry],
  });

  readonly schedulerLeader = new Gauge({
    name: "sota_scheduler_leader",
    help: "1 while this replica leads the backup schedule and retention (one replica of a shared state at a time), else 0.",
    registers: [this.registry],
  });

  private lostPoolerPorts: () => ReadonlyArray<{ readonly slug: string }> = () => [];

  /**
   * One series per database whose pooler port another process holds, and none
   * otherwise: the metric names only databases in that state, so it lists no
   * projects in normal operation.
   */
  readonly poolerPortLost: Gauge<"slug"> = new Gauge({
    name: "sota_pooler_port_lost",
    help: "1 for each database whose pooler port another local process holds: not ready until the port is free and Ensure runs again.",
    labelNames: ["slug"] as const,
    registers: [this.registry],
    collect: () => {
      this.poolerPortLost.reset();
      for (const { slug } of this.lostPoolerPorts()) this.poolerPortLost.set({ slug }, 1);
    },
  });

  private readDatabases: () => Promise<readonly DatabaseSample[]> = async () => [];
  private sampled: { at: number; samples: Promise<readonly DatabaseSample[]> } | undefined;

  readonly databaseUp = this.perDatabase(
    "sota_database_up",
    "1 when the database and its pooler answered this scrape, else 0 (not ready, not running, or too slow).",
    [],
    (gauge, sample) => {
      gauge.set({ project_id: sample.projectId }, sample.figures ? 1 : 0);
    },
  );

  readonly databaseSize = this.perDatabaseValue(
    "sota_database_size_bytes",
    "The database's size on disk (pg_database_size).",
    (figures) => figures.sizeBytes,
  );

  readonly clientConnections = this.perDatabase(
    "sota_pooler_client_connections",
    "Client connections to the pooler: active (linked to a server or idle) and waiting (for a server connection).",
    ["state"],
    (gauge, { projectId, figures }) => {
      if (!figures) return;
      gauge.set({ project_id: projectId, state: "active" }, figures.clients.active);
      gauge.set({ project_id: projectId, state: "waiting" }, figures.clients.waiting);
    },
  );

  readonly serverConnections = this.perDatabase(
    "sota_pooler_server_connections",
    "Server connections from the pooler to PostgreSQL: active (serving a client) and idle (in the pool).",
    ["state"],
    (gauge, { projectId, figures }) => {
      if (!figures) return;
      gauge.set({ project_id: projectId, state: "active" }, figures.servers.active);
      gauge.set({ project_id: projectId, state: "idle" }, figures.servers.idle);
    },
  );

  readonly maxWait = this.perDatabaseValue(
    "sota_pooler_max_wait_seconds",
    "How long the oldest waiting client has waited for a server connection.",
    (figures) => figures.maxWaitSeconds,
  );

  readonly maxClientConnections = this.perDatabaseValue(
    "sota_pooler_max_client_connections",
    "The pooler's max_client_conn in effect.",
    (figures) => figures.maxClientConnections,
  );

  readonly poolSize = this.perDatabaseValue(
    "sota_pooler_pool_size",
    "Server connections the pool may open to the database (default_pool_size in effect).",
    (figures) => figures.poolSize,
  );

  /**
   * PgBouncer's own totals. They are counters, but the pooler keeps them, not
   * us: each scrape sets the value PgBouncer reports. When PgBouncer restarts
   * they start again from 0, which Prometheus' rate() and increase() read as
   * a counter reset, as they should.
   */
  readonly poolerTotals = POOLER_TOTALS.map(([name, help, field]) => {
    const counter: Counter<"project_id"> = new Counter({
      name,
      help: `${help} Restarts from 0 with the pooler.`,
      labelNames: ["project_id"] as const,
      registers: [this.registry],
      collect: async () => {
        const samples = await this.databaseSamples();
        counter.reset();
        for (const { projectId, figures } of samples) {
          if (figures) counter.inc({ project_id: projectId }, figures.totals[field]);
        }
      },
    });
    return counter;
  });

  private outOfMemoryKills: () => ReadonlyArray<{ readonly projectId: string; readonly kills: number }> = () => [];

  /**
   * Out-of-memory kills per database since the service started it, read from
   * the runtime at scrape time; only databases with at least one are listed.
   */
  readonly databaseOomKills: Counter<"project_id"> = new Counter({
    name: "sota_database_oom_kills_total",
    help: "Times the kernel killed a process of a database for running out of memory (PostgreSQL then restarted its sessions).",
    labelNames: ["project_id"] as const,
    registers: [this.registry],
    collect: () => {
      this.databaseOomKills.reset();
      for (const { projectId, kills } of this.outOfMemoryKills()) this.databaseOomKills.inc({ project_id: projectId }, kills);
    },
  });

  /** 1 for each database measured over its size quota (GetDatabase, Ensure); none otherwise. */
  readonly databaseOverSizeQuota = new Gauge({
    name: "sota_database_over_size_quota",
    help: "1 for each database whose size on disk was last measured over its quota (never truncated: an alert for the operator).",
    labelNames: ["project_id"] as const,
    registers: [this.registry],
  });

  /**
   * Off-host copies (src/offsite/): exported whether or not object storage is
   * configured, so the alert rules' metrics always exist (pending stays 0
   * without it, and nothing alerts).
   */
  readonly offsite = new OffsiteMetrics(this.registry);

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Counts one request and its latency: RPCs and the plain-HTTP download alike. */
  observeRequest(method: string, code: string, startedAt: number): void {
    this.requests.inc({ method, code });
    this.requestDuration.observe({ method, code }, (performance.now() - startedAt) / 1000);
  }

  /** Where the databases gauge reads its counts from (the store). */
  countDatabasesWith(source: () => Promise<Record<string, number>>): void {
    this.countDatabases = source;
  }

  /** Where the per-database gauges and pooler counters read from, at scrape time (the service). */
  watchDatabases(source: () => Promise<readonly DatabaseSample[]>): void {
    this.readDatabases = source;
    this.sampled = undefined;
  }

  /** One read per scrape (and per few seconds) for every per-database metric. */
  private databaseSamples(): Promise<readonly DatabaseSample[]> {
    const now = performance.now();
    if (!this.sampled || now - this.sampled.at > FIGURES_CACHE_MS) {
      // A failed read (the state store away) leaves the per-database series out of this scrape, not
      // the whole scrape, and is not kept: the next scrape tries again.
      const samples = this.readDatabases().catch((): readonly DatabaseSample[] => {
        if (this.sampled?.samples === samples) this.sampled = undefined;
        return [];
      });
      this.sampled = { at: now, samples };
    }
    return this.sampled.samples;
  }

  /** One value per database that answered. */
  private perDatabaseValue(name: string, help: string, value: (figures: DatabaseFigures) => number): Gauge<"project_id"> {
    return this.perDatabase(name, help, [], (gauge, { projectId, figures }) => {
      if (figures) gauge.set({ project_id: projectId }, value(figures));
    });
  }

  /** A gauge per database, labelled by project id, rebuilt from the samples at every scrape (a removed database leaves no series). */
  private perDatabase<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (gauge: Gauge<L | "project_id">, sample: DatabaseSample) => void,
  ): Gauge<L | "project_id"> {
    const gauge: Gauge<L | "project_id"> = new Gauge({
      name,
      help,
      labelNames: ["project_id", ...labelNames],
      registers: [this.registry],
      collect: async () => {
        const samples = await this.databaseSamples();
        gauge.reset();
        for (const sample of samples) fill(gauge, sample);
      },
    });
    return gauge;
  }

  /** Where the pooler-port gauge reads from, at scrape time: the runtime, when it binds host ports. */
  watchPoolerPorts(runtime: { lostPoolerPorts?(): ReadonlyArray<{ readonly slug: string }> }): void {
    this.lostPoolerPorts = () => runtime.lostPoolerPorts?.() ?? [];
  }

  /** Where the out-of-memory counter reads from, at scrape time: the runtime, when it watches its databases' memory. */
  watchOutOfMemory(runtime: { outOfMemoryKills?(): ReadonlyArray<{ readonly projectId: string; readonly kills: number }> }): void {
    this.outOfMemoryKills = () => runtime.outOfMemoryKills?.() ?? [];
  }
}
