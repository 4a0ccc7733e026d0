// A database's optional size quota: measured (pg_database_size, through the
// service's superuser session in the maintenance database), reported in
// GetDatabase, as a metric, and in the log when a database goes over or back
// under. Never enforced by truncating, refusing writes or dropping anything:
// the operator decides what to do with a tenant over its quota.
import { loggableError, type Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import type { Runtime, RuntimeTarget } from "../runtime/runtime.js";
import type { DatabaseRecord } from "../store/records.js";

const MIB = 1024 * 1024;

export interface SizeQuotaReport {
  readonly quotaBytes: number;
  readonly sizeBytes: number;
  readonly exceeded: boolean;
}

export class SizeQuotas {
  /** Projects last seen over their quota, so each crossing is logged once. */
  private readonly over = new Set<string>();

  constructor(
    private readonly deps: { readonly runtime: Runtime; readonly logger: Logger; readonly metrics: Metrics },
    /** SOTA_DB_SIZE_QUOTA_MB: every database's quota unless its project overrides it; 0: none. */
    private readonly defaultQuotaMb: number,
  ) {}

  quotaMb(database: DatabaseRecord): number {
    return database.limits?.sizeQuotaMb ?? this.defaultQuotaMb;
  }

  /**
   * Measures a ready database that has a quota; undefined when it has none or
   * cannot be measured now. `knownSizeBytes`: its size read just now by the
   * caller (GetDatabase's live figures), so it is not asked for twice.
   */
  async check(database: DatabaseRecord, knownSizeBytes?: number): Promise<SizeQuotaReport | undefined> {
    const quotaMb = this.quotaMb(database);
    if (quotaMb <= 0 || database.state !== "ready" || database.runtime !== this.deps.runtime.kind) {
      this.settle(database, false);
      return undefined;
    }
    let sizeBytes: number;
    try {
      sizeBytes = knownSizeBytes ?? (await this.measure(database));
    } catch (error) {
      this.deps.logger.warn({ projectId: database.projectId, slug: database.slug, err: loggableError(error) }, "could not measure the database's size");
      return undefined;
    }
    const quotaBytes = quotaMb * MIB;
    const exceeded = sizeBytes > quotaBytes;
    this.settle(database, exceeded, { sizeBytes, quotaBytes });
    return { quotaBytes, sizeBytes, exceeded };
  }

  private async measure(database: DatabaseRecord): Promise<number> {
    const target: RuntimeTarget = { projectId: database.projectId, slug: database.slug };
    // The slug is validated ([a-z0-9-]) and passed as a literal, never as an identifier.
    const rows = await this.deps.runtime.adminQuery(target, `SELECT pg_database_size('${database.slug}')::text AS bytes`);
    return Number(rows[0]?.["bytes"] ?? 0);
  }

  private settle(database: DatabaseRecord, exceeded: boolean, figures?: { sizeBytes: number; quotaBytes: number }): void {
    const { projectId, slug } = database;
    const was = this.over.has(projectId);
    if (exceeded) {
      this.over.add(projectId);
      this.deps.metrics.databaseOverSizeQuota.set({ project_id: projectId }, 1);
      if (!was) this.deps.logger.error({ projectId, slug, ...figures }, "database is over its size quota (nothing is truncated or refused: the operator decides)");
    } else {
      this.over.delete(projectId);
      this.deps.metrics.databaseOverSizeQuota.remove({ project_id: projectId });
      if (was) this.deps.logger.info({ projectId, slug, ...figures }, "database is back under its size quota");
    }
  }
}
