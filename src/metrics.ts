// Prometheus metrics (prom-client), on a registry of our own so tests can run
// several services in one process. Labels never carry a secret: method names,
// codes, states, project ids and, for a database in trouble only, its slug.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

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

  /** Where the pooler-port gauge reads from, at scrape time: the runtime, when it binds host ports. */
  watchPoolerPorts(runtime: { lostPoolerPorts?(): ReadonlyArray<{ readonly slug: string }> }): void {
    this.lostPoolerPorts = () => runtime.lostPoolerPorts?.() ?? [];
  }

  /** Where the out-of-memory counter reads from, at scrape time: the runtime, when it watches its databases' memory. */
  watchOutOfMemory(runtime: { outOfMemoryKills?(): ReadonlyArray<{ readonly projectId: string; readonly kills: number }> }): void {
    this.outOfMemoryKills = () => runtime.outOfMemoryKills?.() ?? [];
  }
}
