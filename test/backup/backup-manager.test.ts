// The manager's bookkeeping with a dump the test controls: one backup per
// database at a time, wait or not, failures (dump broken off, disk full,
// killed service) recorded loudly and leaving no partial file, ids of other
// projects unknown, memory flat on a big dump.
import { execFileSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { backupFilePath, partialFilePath } from "../../src/backup/backup-paths.js";
import { INTERRUPTED } from "../../src/backup/startup-recovery.js";
import { LocalCoordination } from "../../src/coordination/coordination.js";
import { DomainError } from "../../src/errors.js";
import { RuntimeError, type RuntimeTarget } from "../../src/runtime/runtime.js";
import { newBackupId } from "../../src/names.js";
import { newBackupRecord } from "../../src/store/records.js";
import { controlledDump, databaseRecord, FakeDumpRuntime, managerBed, metricValue, sqlText, TestClock, type ManagerBed } from "../support/backup-fakes.js";

let bed: ManagerBed;
beforeEach(async () => {
  bed = await managerBed();
});
afterEach(() => bed.cleanup());

const shop = () => ({ projectId: randomUUID(), slug: "shop" });

async function filesOf(slug: string): Promise<string[]> {
  return readdir(join(bed.backupDir, slug)).catch(() => []);
}

describe("creating backups", () => {
  it("returns a running backup at once without wait, the finished one with wait", async () => {
    const manager = await bed.open();
    const target = shop();
    const dump = controlledDump();
    bed.runtime.dumpWith = () => dump;
    const running = await manager.create(target, "manual", { wait: false });
    expect(running.state).toBe("running");
    expect((await manager.list(target.projectId))[0]).toMatchObject({ id: running.id, state: "running", kind: "manual" });
    dump.end(sqlText(100));
    // Still running: waiting joins it.
    const waited = await manager.create(target, "manual", { wait: true });
    expect(waited.id).toBe(running.id);
    expect(waited).toMatchObject({ state: "succeeded", kind: "manual", error: null });
    expect(waited.sizeBytes).toBeGreaterThan(0);
    expect(waited.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(waited.finishedAt).toBeInstanceOf(Date);
    bed.runtime.dumpWith = () => Readable.from([sqlText(100)]);
    const next = await manager.create(target, "manual", { wait: true });
    expect(next.id).not.toBe(running.id);
    expect((await manager.list(target.projectId)).map((r) => r.id).sort()).toEqual([next.id, running.id].sort());
    expect(await metricValue(bed.metrics, "sota_backup_last_success_timestamp_seconds", { project_id: target.projectId })).toBe(
      next.finishedAt!.getTime() / 1000,
    );
  });

  it("runs one backup per database at a time: a second create gets the running one", async () => {
    const manager = await bed.open();
    const target = shop();
    const other = { projectId: randomUUID(), slug: "blog" };
    const dump = controlledDump();
    bed.runtime.dumpWith = (t) => (t.slug === "shop" ? dump : Readable.from([sqlText(1)]));
    const first = await manager.create(target, "manual", { wait: false });
    const second = await manager.create(target, "manual", { wait: false });
    const waiting = manager.create(target, "scheduled", { wait: true });
    expect(second.id).toBe(first.id);
    // Another database is not held up.
    expect((await manager.create(other, "manual", { wait: true })).state).toBe("succeeded");
    dump.end(sqlText(10));
    const finished = await waiting;
    expect(finished.id).toBe(first.id);
    expect(finished.state).toBe("succeeded");
    expect(bed.runtime.dumps.filter((t) => t.slug === "shop")).toHaveLength(1);
    // Once it has finished, the next create starts a new one.
    expect((await manager.create(target, "manual", { wait: true })).id).not.toBe(first.id);
  });
});

describe("failed backups", () => {
  it("a dump that breaks off half way is recorded failed, counted, logged, and leaves no file", async () => {
    const manager = await bed.open();
    const target = shop();
    const dump = controlledDump();
    bed.runtime.dumpWith = () => dump;
    const running = await manager.create(target, "manual", { wait: false });
    dump.write(randomBytes(512 * 1024));
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The partial file exists while the backup runs ...
    expect(await filesOf("shop")).toEqual([`${running.id}.sql.gz.partial`]);
    dump.destroy(new RuntimeError("failed", "pg_dump of shop failed (exit code 1): connection lost"));
    const failed = await manager.create(target, "manual", { wait: true }).then(async () => (await manager.list(target.projectId)).find((r) => r.id === running.id)!);
    // ... and is gone once it has failed.
    expect(failed).toMatchObject({ state: "failed", error: "pg_dump of shop failed (exit code 1): connection lost", sizeBytes: null, sha256: null });
    expect(failed.finishedAt).toBeInstanceOf(Date);
    expect((await filesOf("shop")).filter((name) => name.startsWith(running.id))).toEqual([]);
    expect(await metricValue(bed.metrics, "sota_backup_failures_total", { kind: "manual" })).toBe(1);
    const errorLine = bed.logLines.map((line) => JSON.parse(line)).find((line) => line.msg === "backup failed");
    expect(errorLine).toMatchObject({ level: 50, backupId: running.id, kind: "manual" });
  });

  it("a failed backup is returned to a waiting caller, never listed as succeeded, never downloadable", async () => {
    const manager = await bed.open();
    const target = shop();
    bed.runtime.dumpWith = () => {
      const dump = new PassThrough();
      dump.destroy(new RuntimeError("unavailable", "the database shop is not running; ensure it first"));
      return dump;
    };
    const failed = await manager.create(target, "scheduled", { wait: true });
    expect(failed).toMatchObject({ state: "failed", error: "the database shop is not running; ensure it first" });
    await expect(manager.download(target.projectId, failed.id)).rejects.toMatchObject({ kind: "failed_precondition" });
    expect(await metricValue(bed.metrics, "sota_backup_failures_total", { kind: "scheduled" })).toBe(1);
  });

  it("startup recovery marks backups a killed process left running as failed and removes their files", async () => {
    const target = shop();
    const startedAt = new Date(Date.now() - 60_000);
    const killed = newBackupRecord({ id: newBackupId(startedAt), projectId: target.projectId, slug: target.slug, kind: "scheduled", startedAt });
    await bed.store.insertBackup(killed);
    await mkdir(join(bed.backupDir, "shop"), { recursive: true });
    await writeFile(partialFilePath(bed.backupDir, "shop", killed.id), randomBytes(4096));
    const stray = `${newBackupId(startedAt)}.sql.gz.partial`;
    await writeFile(join(bed.backupDir, "shop", stray), "x");

    const manager = await bed.open();
    expect((await manager.list(target.projectId))[0]).toMatchObject({ id: killed.id, state: "failed", error: INTERRUPTED });
    expect(await filesOf("shop")).toEqual([]);
    expect(await metricValue(bed.metrics, "sota_backup_failures_total", { kind: "scheduled" })).toBe(1);
    // A new backup works as usual.
    expect((await manager.create(target, "manual", { wait: true })).state).toBe("succeeded");
  });

  it("startup recovery leaves alone a backup another live replica is writing (its dump lock is held), and settles it once that replica is gone", async () => {
    const target = shop();
    const startedAt = new Date(Date.now() - 60_000);
    const live = newBackupRecord({ id: newBackupId(startedAt), projectId: target.projectId, slug: target.slug, kind: "manual", startedAt });
    await bed.store.insertBackup(live);
    await mkdir(join(bed.backupDir, "shop"), { recursive: true });
    await writeFile(partialFilePath(bed.backupDir, "shop", live.id), "being written");
    // The other replica, standing in: it holds the project's dump lock while it writes.
    const coordination = new LocalCoordination("here");
    let finish!: () => void;
    const writing = coordination.withLock("dump", target.projectId, () => new Promise<void>((resolve) => (finish = resolve)));

    const manager = await bed.open({ coordination });
    expect((await manager.list(target.projectId))[0]).toMatchObject({ id: live.id, state: "running" });
    expect(await filesOf("shop")).toEqual([`${live.id}.sql.gz.partial`]);

    // Gone without finishing: the next leader settles it.
    finish();
    await writing;
    manager.start();
    await waitForState(manager, target.projectId, "failed");
    expect(await filesOf("shop")).toEqual([]);
  });

  it("takes a scheduled backup a killed service left running again once it leads, and leaves other kinds failed", async () => {
    const created = new Date(Date.now() - 24 * 60 * 60 * 1000);
    const scheduled = databaseRecord(randomUUID(), "nightly", created);
    const manual = databaseRecord(randomUUID(), "manual", created);
    await bed.store.insertDatabase(scheduled);
    await bed.store.insertDatabase(manual);
    const startedAt = new Date(Date.now() - 60_000);
    for (const [database, kind] of [[scheduled, "scheduled"], [manual, "manual"]] as const) {
      await bed.store.insertBackup(newBackupRecord({ id: newBackupId(startedAt), projectId: database.projectId, slug: database.slug, kind, startedAt }));
    }
    bed.runtime.dumpWith = () => Readable.from([sqlText(5)]);
    const manager = await bed.open({ schedule: { cron: "0 3 * * *", catchUpDelayMs: 60_000 } });
    manager.start();
    await waitForState(manager, scheduled.projectId, "succeeded");
    expect((await manager.list(scheduled.projectId)).map((b) => [b.kind, b.state])).toEqual([
      ["scheduled", "succeeded"],
      ["scheduled", "failed"],
    ]);
    expect((await manager.list(manual.projectId)).map((b) => [b.kind, b.state])).toEqual([["manual", "failed"]]);
  });

  it("disk full: the backup fails with a clear reason, no partial file, and older backups stay", async () => {
    const target = shop();
    const tmpfs = await mountSmallTmpfs(bed.backupDir);
    try {
      const manager = await bed.open(
        tmpfs
          ? {}
          : {
              // No tmpfs here (not root, no mount): a writer that fails like a full disk after 1 MiB.
              openOutput: () => diskFullAfter(1024 * 1024),
            },
      );
      bed.runtime.dumpWith = () => Readable.from([sqlText(200)]);
      const old = await manager.create(target, "manual", { wait: true });
      expect(old.state).toBe("succeeded");
      const oldBytes = await readFile(backupFilePath(bed.backupDir, "shop", old.id));
      // Random bytes do not compress: 3 MiB cannot fit in 1 MiB.
      bed.runtime.dumpWith = () => Readable.from(chunks(3 * 1024 * 1024));
      const failed = await manager.create(target, "manual", { wait: true });
      expect(failed).toMatchObject({ state: "failed", error: "disk full: no space left in the backup directory" });
      expect(await filesOf("shop")).toEqual([`${old.id}.sql.gz`]);
      expect(await readFile(backupFilePath(bed.backupDir, "shop", old.id))).toEqual(oldBytes);
      expect((await manager.list(target.projectId)).find((r) => r.id === old.id)?.state).toBe("succeeded");
      expect(await metricValue(bed.metrics, "sota_backup_failures_total", { kind: "manual" })).toBe(1);
      await manager.close();
    } finally {
      if (tmpfs) execFileSync("umount", [bed.backupDir]);
    }
  });
});

describe("restore preconditions", () => {
  it("refuses to swap when the safety backup fails, and leaves the live database alone", async () => {
    const runtime = new ScratchServerFake();
    const manager = await bed.open({ runtime });
    const target = shop();
    const backup = await manager.create(target, "manual", { wait: true });
    runtime.dumpWith = () => {
      const dump = new PassThrough();
      setImmediate(() => dump.destroy(new RuntimeError("failed", "pg_dump of shop failed (exit code 1)")));
      return dump;
    };
    const error = await manager.restore(target, backup.id).catch((reason: unknown) => reason);
    expect(error).toMatchObject({ kind: "failed_precondition" });
    expect((error as DomainError).message).toMatch(/safety backup of the current state failed \(pg_dump of shop failed.*database was not changed/);
    expect((await manager.list(target.projectId)).map((r) => [r.kind, r.state])).toEqual([
      ["safety", "failed"],
      ["manual", "succeeded"],
    ]);
    expect(await metricValue(bed.metrics, "sota_backup_failures_total", { kind: "safety" })).toBe(1);
    // Loaded into a scratch database, then dropped it; never paused the pooler, never renamed the live database.
    expect(runtime.calls.some((call) => call.startsWith("restore into sota_restore_"))).toBe(true);
    expect(runtime.calls.at(-1)).toMatch(/^DROP DATABASE IF EXISTS "sota_restore_[0-9a-f]{12}" WITH \(FORCE\)$/);
    expect(runtime.calls.filter((call) => /PAUSE|RENAME/.test(call))).toEqual([]);
  });

  it("refuses to restore a failed or running backup", async () => {
    const manager = await bed.open();
    const target = shop();
    const dump = controlledDump();
    bed.runtime.dumpWith = () => dump;
    const running = await manager.create(target, "manual", { wait: false });
    await expect(manager.restore(target, running.id)).rejects.toMatchObject({ kind: "failed_precondition" });
    dump.destroy(new RuntimeError("failed", "pg_dump of shop failed"));
    const failed = await manager.create(target, "manual", { wait: true });
    expect(failed.state).toBe("failed");
    await expect(manager.restore(target, failed.id)).rejects.toMatchObject({ kind: "failed_precondition" });
    await expect(manager.verify(target, failed.id)).rejects.toMatchObject({ kind: "failed_precondition" });
  });
});

describe("access to backups", () => {
  it("another project's backup id is NotFound for restore, verify and download", async () => {
    const manager = await bed.open();
    const owner = shop();
    const intruder = { projectId: randomUUID(), slug: "other" };
    const backup = await manager.create(owner, "manual", { wait: true });
    for (const attempt of [
      manager.download(intruder.projectId, backup.id),
      manager.restore(intruder, backup.id),
      manager.verify(intruder, backup.id),
      manager.download(owner.projectId, newBackupId(new Date())),
    ]) {
      const error = await attempt.catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(DomainError);
      expect((error as DomainError).kind).toBe("not_found");
    }
    await expect(manager.download(owner.projectId, "../../etc/passwd")).rejects.toMatchObject({ kind: "invalid_argument" });
    expect(await manager.list(intruder.projectId)).toEqual([]);
  });

  it("a download whose file is missing or changed size is DataLoss, not a short file", async () => {
    const manager = await bed.open();
    const target = shop();
    const backup = await manager.create(target, "manual", { wait: true });
    await writeFile(backupFilePath(bed.backupDir, "shop", backup.id), "truncated");
    await expect(manager.download(target.projectId, backup.id)).rejects.toMatchObject({ kind: "data_loss" });
  });

  it("publishes each project's last success from the store at start", async () => {
    const target = shop();
    const first = await bed.open();
    const backup = await first.create(target, "manual", { wait: true });
    await first.close();
    bed.metrics.backupLastSuccess.reset();
    await bed.open();
    expect(await metricValue(bed.metrics, "sota_backup_last_success_timestamp_seconds", { project_id: target.projectId })).toBe(
      backup.finishedAt!.getTime() / 1000,
    );
  });
});

describe("streaming", () => {
  it("keeps memory flat while backing up a large dump", async () => {
    const manager = await bed.open();
    const target = shop();
    const total = 384 * 1024 * 1024;
    const line = Buffer.from(`INSERT INTO items VALUES (1, '${"x".repeat(80)}', ${Math.PI});\n`);
    let produced = 0;
    bed.runtime.dumpWith = () =>
      new Readable({
        read() {
          if (produced >= total) return void this.push(null);
          const chunk = Buffer.alloc(64 * 1024);
          for (let offset = 0; offset < chunk.length; offset += line.length) line.copy(chunk, offset);
          produced += chunk.length;
          this.push(chunk);
        },
      });
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const backup = await manager.create(target, "manual", { wait: true });
    clearInterval(sampler);
    expect(backup.state).toBe("succeeded");
    expect(produced).toBeGreaterThanOrEqual(total);
    expect(peak - before).toBeLessThan(64 * 1024 * 1024);
  });
});

/** A server that answers the scratch database queries and accepts any load, recording every call. */
class ScratchServerFake extends FakeDumpRuntime {
  readonly calls: string[] = [];
  override async adminQuery(_target: RuntimeTarget, sql: string): Promise<Record<string, string | null>[]> {
    this.calls.push(sql);
    if (sql.includes("to_jsonb(d)")) {
      return [{ owner: "app_shop", props: JSON.stringify({ encoding_name: "UTF8", datcollate: "C", datctype: "C", datconnlimit: -1 }) }];
    }
    if (sql.includes("datacl IS NULL")) return [{ is_default: "true" }];
    return [];
  }
  override async restore(_target: RuntimeTarget, sql: Readable, database?: string): Promise<void> {
    this.calls.push(`restore into ${database}`);
    for await (const chunk of sql) void chunk;
  }
  override async poolerCommand(_target: RuntimeTarget, command: string): Promise<Record<string, string | null>[]> {
    this.calls.push(command);
    return [];
  }
}

/** Mounts a 1 MiB tmpfs on dir when this process may (root with mount rights); false otherwise. */
async function mountSmallTmpfs(dir: string): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function diskFullAfter(limit: number): PassThrough {
  let written = 0;
  return new (class extends PassThrough {
    override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
      written += chunk.length;
      if (written > limit) callback(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }));
      else super._write(chunk, encoding, callback);
    }
  })().on("data", () => undefined);
}

function* chunks(total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += 64 * 1024) yield randomBytes(64 * 1024);
}

describe("limits against flooding", () => {
  it("a tenant's manual backups stop at the limit until the window rolls on; scheduled and trusted ones do not", async () => {
    const clock = new TestClock(new Date("2026-11-20T12:00:00Z"));
    const manager = await bed.open({ now: clock.now, manualLimit: { count: 2, windowMs: 3_600_000 } });
    const target = shop();
    for (let i = 0; i < 2; i++) expect((await manager.create(target, "manual", { wait: true, byTenant: true })).state).toBe("succeeded");
    const files = await filesOf("shop");
    const refused = await manager.create(target, "manual", { wait: true, byTenant: true }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(DomainError);
    expect((refused as DomainError).kind).toBe("resource_exhausted");
    expect((refused as DomainError).message).toMatch(/started 2 manual backups in the last 1 h.*try again in 3600 s/);
    expect(await filesOf("shop")).toEqual(files);
    expect(await manager.list(target.projectId)).toHaveLength(2);
    // The schedule and the deploy engine are not the tenant: the limit is not theirs.
    expect((await manager.create(target, "scheduled", { wait: true })).state).toBe("succeeded");
    expect((await manager.create(target, "manual", { wait: true })).state).toBe("succeeded");
    // Nor does one project's budget touch another's.
    expect((await manager.create({ projectId: randomUUID(), slug: "blog" }, "manual", { wait: true, byTenant: true })).state).toBe("succeeded");
    clock.set(new Date("2026-11-20T13:00:01Z"));
    expect((await manager.create(target, "manual", { wait: true, byTenant: true })).state).toBe("succeeded");
  });

  it("joining a running backup costs nothing against the limit", async () => {
    const manager = await bed.open({ manualLimit: { count: 1, windowMs: 3_600_000 } });
    const target = shop();
    const dump = controlledDump();
    bed.runtime.dumpWith = () => dump;
    const first = await manager.create(target, "manual", { wait: false, byTenant: true });
    expect((await manager.create(target, "manual", { wait: false, byTenant: true })).id).toBe(first.id);
    const joined = manager.create(target, "manual", { wait: true, byTenant: true });
    dump.end(sqlText(10));
    expect(await joined).toMatchObject({ id: first.id, state: "succeeded" });
    expect((await manager.create(target, "manual", { wait: true, byTenant: true }).catch((error: DomainError) => error.kind))).toBe("resource_exhausted");
  });

  it("below the free-space reserve no backup starts, of any kind: no record, no file, counted and logged", async () => {
    const target = shop();
    const manager = await bed.open();
    const old = await manager.create(target, "scheduled", { wait: true });
    await manager.close();
    const low = await bed.open({ minFree: { bytes: Number.MAX_SAFE_INTEGER } });
    for (const kind of ["scheduled", "manual"] as const) {
      const refused = await low.create(target, kind, { wait: true }).catch((error: unknown) => error);
      expect((refused as DomainError).kind).toBe("resource_exhausted");
      expect((refused as DomainError).message).toMatch(/^not enough free disk space to start this backup/);
      // The host's sizes and paths stay in the log.
      expect((refused as DomainError).message).not.toContain(bed.backupDir);
    }
    expect((await low.list(target.projectId)).map((record) => record.id)).toEqual([old.id]);
    expect(await filesOf("shop")).toEqual([`${old.id}.sql.gz`]);
    expect(await metricValue(bed.metrics, "sota_backup_failures_total", { kind: "scheduled" })).toBe(1);
    expect(bed.logLines.join("")).toMatch(/"availableBytes":\d+.*backup refused: not enough free disk space/);
  });
});

async function waitForState(manager: { list(projectId: string): Promise<Array<{ state: string }>> }, projectId: string, state: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while ((await manager.list(projectId))[0]?.state !== state) {
    if (Date.now() > deadline) throw new Error(`backup not ${state} in time`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
