// Live figures of a database: its size on disk (PostgreSQL) and how busy its
// pool is (PgBouncer's SHOW POOLS and SHOW STATS), read through the Runtime
// port so both drivers answer alike. Read on demand (GetDatabase, a scrape),
// never stored: a figure is only worth what it was a moment ago.
import { ConcurrencyLimit } from "../backup/concurrency-limit.js";
import { quoteLiteral } from "../backup/sql-text.js";
import { DomainError } from "../errors.js";
import { loggableError, type Logger } from "../log.js";
import type { DatabaseFigures } from "../figures.js";
import type { PoolerInfo, Rows, Runtime, RuntimeTarget } from "../runtime/runtime.js";
import type { DatabaseRecord } from "../store/records.js";

export type { DatabaseFigures } from "../figures.js";

/** How long GetDatabase and a scrape wait for one database's figures: a stuck database must not hold either. */
export const FIGURES_TIMEOUT_MS = 2_000;
/** How many databases a scrape reads at once. */
const FIGURES_CONCURRENCY = 4;
/**
 * How long a whole scrape may spend reading figures, below Prometheus' default
 * 10 s scrape timeout: many stuck databases (2 s each) must not make the
 * scrape itself time out; those not reached by then are reported down.
 */
const FIGURES_SCRAPE_BUDGET_MS = 8_000;

/** A database's live figures, or why there are none. */
export type FiguresOutcome = { readonly figures: DatabaseFigures } | { readonly unavailable: string };

/** One database's figures (GetDatabase), or why there are none: never an error, so the description still answers. */
export async function figuresOf(
  runtime: Runtime,
  database: DatabaseRecord,
  logger: Logger,
  timeoutMs = FIGURES_TIMEOUT_MS,
): Promise<FiguresOutcome> {
  if (database.state !== "ready") return { unavailable: `database "${database.slug}" is ${database.state}; call Ensure` };
  if (database.runtime !== runtime.kind) {
    return { unavailable: `database "${database.slug}" lives on the ${database.runtime} runtime, not this service's` };
  }
  try {
    return { figures: await readFigures(runtime, { projectId: database.projectId, slug: database.slug }, database.pooler, timeoutMs) };
  } catch (error) {
    // Runtime and timeout errors say what went wrong without a secret; anything else only in the log.
    if (error instanceof DomainError) return { unavailable: error.message };
    logger.warn({ projectId: database.projectId, slug: database.slug, err: loggableError(error) }, "figures not read");
    return { unavailable: `database "${database.slug}" did not report its figures; see the service log` };
  }
}

/** Figures of many databases (a scrape): a few at a time, each within the timeout, all within the scrape's budget. */
export async function figuresOfEach(
  runtime: Runtime,
  databases: readonly DatabaseRecord[],
  logger: Logger,
): Promise<Array<{ readonly projectId: string } & FiguresOutcome>> {
  const limit = new ConcurrencyLimit(FIGURES_CONCURRENCY);
  const deadline = performance.now() + FIGURES_SCRAPE_BUDGET_MS;
  const read = (database: DatabaseRecord): Promise<FiguresOutcome> => {
    const left = Math.floor(deadline - performance.now());
    if (left <= 0) return Promise.resolve({ unavailable: `database "${database.slug}" was not reached within the scrape's time` });
    return figuresOf(runtime, database, logger, Math.min(FIGURES_TIMEOUT_MS, left));
  };
  return Promise.all(databases.map(async (database) => ({ projectId: database.projectId, ...(await limit.run(() => read(database))) })));
}

/** Thrown when the figures did not come within the time allowed; the reads go on unobserved. */
export class FiguresTimeoutError extends DomainError {
  constructor(slug: string, timeoutMs: number) {
    super("deadline_exceeded", `database "${slug}" did not report its figures within ${timeoutMs} ms`);
  }
}

export async function readFigures(
  runtime: Runtime,
  target: RuntimeTarget,
  pooler: PoolerInfo | null,
  timeoutMs: number,
): Promise<DatabaseFigures> {
  const reads = Promise.all([
    // Catalog names qualified: this runs as the superuser, in the maintenance database.
    runtime.adminQuery(
      target,
      `SELECT pg_catalog.pg_database_size(d.oid)::text AS bytes FROM pg_catalog.pg_database d WHERE d.datname = ${quoteLiteral(target.slug)}`,
    ),
    runtime.poolerCommand(target, "SHOW POOLS"),
    runtime.poolerCommand(target, "SHOW STATS"),
  ]);
  const [size, pools, stats] = await withTimeout(reads, timeoutMs, () => new FiguresTimeoutError(target.slug, timeoutMs));
  const ours = (rows: Rows) => rows.filter((row) => row["database"] === target.slug);
  const pool = ours(pools);
  const stat = ours(stats);
  const microseconds = (column: string) => sum(stat, column) / 1e6;
  return {
    sizeBytes: Number(size[0]?.["bytes"] ?? 0),
    clients: { active: sum(pool, "cl_active"), waiting: sum(pool, "cl_waiting") },
    // An idle server is any the pool holds that no client uses: fresh, used, being tested, logging in.
    servers: { active: sum(pool, "sv_active"), idle: sum(pool, "sv_idle", "sv_used", "sv_tested", "sv_login") },
    maxWaitSeconds: Math.max(0, ...pool.map((row) => num(row["maxwait"]) + num(row["maxwait_us"]) / 1e6)),
    maxClientConnections: pooler?.maxClientConn ?? 0,
    poolSize: pooler?.defaultPoolSize ?? 0,
    totals: {
      transactions: sum(stat, "total_xact_count"),
      queries: sum(stat, "total_query_count"),
      receivedBytes: sum(stat, "total_received"),
      sentBytes: sum(stat, "total_sent"),
      transactionSeconds: microseconds("total_xact_time"),
      querySeconds: microseconds("total_query_time"),
      waitSeconds: microseconds("total_wait_time"),
    },
    readAt: new Date(),
  };
}

/** Resolves or rejects with `work`, or rejects with `timeout()` first; the timer never holds the process open. */
export async function withTimeout<T>(work: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timeout()), ms);
    timer.unref();
  });
  // A read that fails after the deadline must not surface as an unhandled rejection.
  work.catch(() => undefined);
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function sum(rows: Rows, ...columns: string[]): number {
  return rows.reduce((total, row) => total + columns.reduce((part, column) => part + num(row[column]), 0), 0);
}

/** A column the installed PgBouncer does not have counts as 0. */
function num(value: string | null | undefined): number {
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? n : 0;
}
