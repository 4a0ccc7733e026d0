// Scheduled backups: every ready database on the configured cron schedule
// (croner), a bounded number at a time, each optionally verified, followed by
// a retention pass. Each cron slot is claimed in the state store before its
// pass runs: replicas that lead in turn run every slot once, and a leader
// that comes up after slots went by with nobody leading (the service was down
// at 03:00, or the leader died) runs them as one pass, soon. On a state where
// no slot was ever run, databases whose newest good backup is older than one
// interval are backed up soon instead.
import { Cron } from "croner";
import { loggableError, type Logger } from "../log.js";
import type { RuntimeTarget } from "../runtime/runtime.js";
import type { BackupRecord } from "../store/records.js";
import { ConcurrencyLimit, LimitClosedError } from "./concurrency-limit.js";

export interface ScheduledDatabase extends RuntimeTarget {
  readonly createdAt: Date;
}

export interface BackupSchedulerOptions {
  /** A croner expression (5 or 6 fields), in the server's time zone. */
  readonly cron: string;
  readonly concurrency: number;
  /** Verify each scheduled backup right after it succeeds. */
  readonly verify: boolean;
  /** Delay before the start-up catch-up, so it does not compete with bringing databases back. */
  readonly catchUpDelayMs: number;
  /** Databases to back up now (ready, on this service's runtime). */
  readonly databases: () => Promise<readonly ScheduledDatabase[]>;
  readonly lastSuccess: (projectId: string) => Promise<Date | undefined>;
  /** Takes a scheduled backup and resolves once it has finished. */
  readonly backup: (target: RuntimeTarget) => Promise<BackupRecord>;
  readonly verifyBackup: (target: RuntimeTarget, backupId: string) => Promise<unknown>;
  /** The retention pass over every project. */
  readonly prune: () => Promise<void>;
  /** Records slots as run here; answers the ones no replica had claimed. Default: all of them (one service). */
  readonly claimSlots?: (slots: readonly Date[]) => Promise<Date[]>;
  /** The newest slot any replica claimed. Default: none known. */
  readonly lastSlot?: () => Promise<Date | undefined>;
  readonly now: () => Date;
  readonly logger: Logger;
}

/** Slots a leader runs at once after a gap; older ones are reported, not run. */
const MAX_MISSED_SLOTS = 10_000;

export class BackupScheduler {
  private job: Cron | undefined;
  private catchUpTimer: NodeJS.Timeout | undefined;
  private limit: ConcurrencyLimit;
  private readonly passes = new Set<Promise<void>>();

  constructor(private readonly options: BackupSchedulerOptions) {
    this.limit = new ConcurrencyLimit(options.concurrency);
  }

  /** Starts (again, after stop(): a replica that regains the lead) the schedule and its catch-up. */
  start(): void {
    if (this.job) return;
    this.limit = new ConcurrencyLimit(this.options.concurrency);
    // protect: a pass that outlasts the interval is not started twice; the
    // next tick claims the slot it passed over, so that slot is not lost.
    this.job = new Cron(this.options.cron, { protect: true, unref: true }, () => this.track(this.runDueSlots("schedule")));
    this.catchUpTimer = setTimeout(() => void this.track(this.catchUp()), this.options.catchUpDelayMs);
    this.catchUpTimer.unref();
    this.options.logger.info({ schedule: this.options.cron, next: this.job.nextRun()?.toISOString() }, "backup schedule started");
  }

  /** Stops scheduling, drops passes' backups that have not started, waits for those that have. */
  async stop(): Promise<void> {
    this.job?.stop();
    this.job = undefined;
    clearTimeout(this.catchUpTimer);
    this.limit.close();
    await Promise.allSettled([...this.passes]);
  }

  /** The time between two runs of the schedule: how old a last success may be before a catch-up. */
  intervalMs(): number {
    const probe = new Cron(this.options.cron, { paused: true });
    try {
      const [first, second] = probe.nextRuns(2, this.options.now());
      return first && second ? second.getTime() - first.getTime() : Number.POSITIVE_INFINITY;
    } finally {
      probe.stop();
    }
  }

  /** Databases whose newest good backup (or, never backed up, whose creation) is older than one interval. */
  async dueForCatchUp(): Promise<ScheduledDatabase[]> {
    const interval = this.intervalMs();
    const now = this.options.now().getTime();
    const due: ScheduledDatabase[] = [];
    for (const database of await this.options.databases()) {
      const since = (await this.options.lastSuccess(database.projectId)) ?? database.createdAt;
      if (now - since.getTime() > interval) due.push(database);
    }
    return due;
  }

  /**
   * The slots after `after` up to `until` (a tick may fire a moment before
   * its slot's time: half a second is allowed), oldest first, at most
   * MAX_MISSED_SLOTS of the newest.
   */
  slotsBetween(after: Date, until: Date): Date[] {
    const probe = new Cron(this.options.cron, { paused: true });
    try {
      const end = until.getTime() + Math.min(500, this.intervalMs() / 2);
      const slots: Date[] = [];
      let from = after;
      for (;;) {
        const batch = probe.nextRuns(100, from).filter((slot) => slot.getTime() <= end);
        slots.push(...batch);
        if (slots.length > MAX_MISSED_SLOTS) slots.splice(0, slots.length - MAX_MISSED_SLOTS);
        if (batch.length < 100) return slots;
        from = batch[batch.length - 1]!;
      }
    } finally {
      probe.stop();
    }
  }

  /**
   * Claims the slots since the newest one any replica ran (just the current
   * slot on a state that never ran one) and, if any were still unclaimed,
   * runs one pass for them.
   */
  async runDueSlots(reason: string): Promise<void> {
    const now = this.options.now();
    const last = await this.options.lastSlot?.();
    const interval = this.intervalMs();
    const lookback = Number.isFinite(interval) ? 2 * interval : 24 * 60 * 60 * 1000;
    const recent = this.slotsBetween(last ?? new Date(now.getTime() - lookback), now);
    const slots = last ? recent : recent.slice(-1);
    const claimed = this.options.claimSlots ? await this.options.claimSlots(slots) : slots;
    if (claimed.length === 0) return;
    if (claimed.length > 1) this.options.logger.info({ slots: claimed.length, since: claimed[0]!.toISOString() }, "running missed scheduled slots as one pass");
    await this.runPass(await this.options.databases(), reason);
  }

  async catchUp(): Promise<void> {
    // Once slots are recorded they say what was missed; before that, the backups' age does.
    if (await this.options.lastSlot?.()) return this.runDueSlots("catch-up");
    const due = await this.dueForCatchUp();
    if (due.length === 0) return;
    this.options.logger.info({ databases: due.length }, "catching up on missed scheduled backups");
    await this.runPass(due, "catch-up");
  }

  /** Backs up each database (bounded concurrency), verifies if configured, then prunes. */
  async runPass(databases: readonly ScheduledDatabase[], reason: string): Promise<void> {
    const started = performance.now();
    const outcomes = await Promise.all(databases.map((database) => this.limit.run(() => this.backupOne(database)).catch(skipWhenClosed)));
    const failed = outcomes.filter((outcome) => outcome === "failed").length;
    await this.options.prune().catch((error: unknown) => this.options.logger.error({ err: loggableError(error) }, "backup retention pass failed"));
    this.options.logger.info(
      { reason, databases: databases.length, failed, seconds: Math.round((performance.now() - started) / 100) / 10 },
      "scheduled backup pass finished",
    );
  }

  private async backupOne(database: ScheduledDatabase): Promise<"succeeded" | "failed"> {
    const target = { projectId: database.projectId, slug: database.slug };
    try {
      const record = await this.options.backup(target);
      if (record.state !== "succeeded") return "failed";
      if (this.options.verify) await this.options.verifyBackup(target, record.id);
      return "succeeded";
    } catch (error) {
      // The backup itself logs and counts its failures; this is a failure to even start one.
      this.options.logger.error({ projectId: target.projectId, slug: target.slug, err: loggableError(error) }, "scheduled backup could not run");
      return "failed";
    }
  }

  private track(pass: Promise<void>): Promise<void> {
    const tracked = pass.catch((error: unknown) => this.options.logger.error({ err: loggableError(error) }, "scheduled backup pass failed"));
    this.passes.add(tracked);
    void tracked.finally(() => this.passes.delete(tracked));
    return tracked;
  }
}

function skipWhenClosed(error: unknown): "skipped" {
  if (error instanceof LimitClosedError) return "skipped";
  throw error;
}
