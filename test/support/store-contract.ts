// The Store and PortRegistry contract every state store passes: SQLite
// (test/store/sqlite-store.test.ts) and PostgreSQL (test/store/postgres-store.test.ts).
// "Two opens of one location" stand in for two services sharing a state.
import { afterEach, describe, expect, it } from "vitest";
import { StateTooNewError } from "../../src/store/migrations.js";
import type { StateStore } from "../../src/store/open-store.js";
import { newBackupRecord, newDatabaseRecord, newOffsiteCopyRecord, type BackupRecord, type DatabaseRecord, type OffsiteCopyRecord } from "../../src/store/records.js";
import { SlugTakenError } from "../../src/store/store.js";

/** One place a state lives (a file, a database): opened as often as a test needs. */
export interface StoreLocation {
  open(): Promise<StateStore>;
  /** Marks the state as written by a release one schema version ahead of this code. */
  forgeNewerSchema(): Promise<void>;
}

export const A = "550e8400-e29b-41d4-a716-446655440000";
export const B = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

export function databaseRecord(projectId: string, slug: string): DatabaseRecord {
  return newDatabaseRecord({ projectId, slug, runtime: "process", sealedPassword: "v1.k.sealed" }, new Date("2026-11-26T00:00:00Z"));
}

export function backupRecord(id: string, projectId: string, startedAt: string): BackupRecord {
  return newBackupRecord({ id, projectId, slug: "my-app", kind: "manual", startedAt: new Date(startedAt) });
}

const POOLER = { version: "1.24.1", poolMode: "transaction", defaultPoolSize: 20, maxClientConn: 100, preparedStatementsSupported: true, maxPreparedStatements: 200 };

export function storeContract(name: string, newLocation: () => Promise<StoreLocation>): void {
  describe(`${name}: the store contract`, () => {
    const opened: StateStore[] = [];
    async function open(location: StoreLocation): Promise<StateStore> {
      const store = await location.open();
      opened.push(store);
      return store;
    }
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((store) => store.close()));
    });

    it("keeps databases, with every field, across reopen", async () => {
      const location = await newLocation();
      const store = await open(location);
      await store.insertDatabase(databaseRecord(A, "my-app"));
      const updated = await store.updateDatabase(A, {
        state: "ready",
        sealedUrl: "v1.k.url",
        host: "127.0.0.1",
        port: 16432,
        network: null,
        postgresVersion: "17.2",
        pooler: POOLER,
      });
      expect(updated).toMatchObject({ state: "ready", port: 16432, pooler: POOLER, error: null });
      await store.close();
      const reopened = await open(location);
      expect(await reopened.getDatabase(A)).toEqual(updated);
      expect((await reopened.getDatabaseBySlug("my-app"))?.projectId).toBe(A);
      expect(await reopened.getDatabase(B)).toBeUndefined();
      expect(await reopened.listDatabases()).toEqual([updated]);
      expect(await reopened.countDatabasesByState()).toEqual({ ready: 1 });
      await reopened.deleteDatabase(A);
      expect(await reopened.listDatabases()).toEqual([]);
    });

    it("keeps a deleted database's slug its own, deletes it only in the state asked for, and can make it new", async () => {
      const store = await open(await newLocation());
      await store.insertDatabase(databaseRecord(A, "gone-app"));
      await store.updateDatabase(A, { state: "deleted", sealedPassword: "" });
      await expect(store.insertDatabase(databaseRecord(B, "gone-app"))).rejects.toBeInstanceOf(SlugTakenError);
      const createdAt = new Date(Date.now() + 60_000);
      const fresh = await store.updateDatabase(A, { state: "provisioning", sealedPassword: "v1.k.new", createdAt });
      expect(fresh.createdAt).toEqual(createdAt);
      expect(await store.deleteDatabase(A, { onlyIfState: "deleted" })).toBe(false);
      await store.updateDatabase(A, { state: "deleted" });
      expect(await store.deleteDatabase(A, { onlyIfState: "deleted" })).toBe(true);
      expect(await store.getDatabase(A)).toBeUndefined();
    });

    it("keeps a project's limits override, and forgets it when set to null", async () => {
      const location = await newLocation();
      const store = await open(location);
      const limits = { memoryMb: 512, cpus: 0.5 };
      await store.insertDatabase({ ...databaseRecord(A, "my-app"), limits });
      await store.insertDatabase(databaseRecord(B, "other"));
      expect((await store.getDatabase(A))?.limits).toEqual(limits);
      expect((await store.getDatabase(B))?.limits).toBeUndefined();
      const updated = await store.updateDatabase(B, { limits: { pids: 100, shmMb: 0 } });
      expect(updated.limits).toEqual({ pids: 100, shmMb: 0 });
      await store.close();
      const reopened = await open(location);
      expect((await reopened.getDatabase(B))?.limits).toEqual({ pids: 100, shmMb: 0 });
      expect((await reopened.updateDatabase(A, { limits: null })).limits).toBeUndefined();
    });

    it("refuses a slug another project owns, and changes nothing", async () => {
      const store = await open(await newLocation());
      await store.insertDatabase(databaseRecord(A, "my-app"));
      await expect(store.insertDatabase(databaseRecord(B, "my-app"))).rejects.toBeInstanceOf(SlugTakenError);
      expect(await store.getDatabase(B)).toBeUndefined();
      expect(await store.listDatabases()).toHaveLength(1);
    });

    it("gives a slug to exactly one of two projects inserting it at once through two stores", async () => {
      const location = await newLocation();
      const [first, second] = [await open(location), await open(location)];
      const outcomes = await Promise.allSettled([first.insertDatabase(databaseRecord(A, "twin")), second.insertDatabase(databaseRecord(B, "twin"))]);
      expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(1);
      const refused = outcomes.find((outcome) => outcome.status === "rejected") as PromiseRejectedResult;
      expect(refused.reason).toBeInstanceOf(SlugTakenError);
      expect(await first.listDatabases()).toHaveLength(1);
    });

    it("refuses to update a project it has no database for", async () => {
      const store = await open(await newLocation());
      await expect(store.updateDatabase(A, { state: "failed" })).rejects.toThrow(/no database recorded/);
    });

    it("allocates each project its own pooler port, durably, and skips unusable ports", async () => {
      const location = await newLocation();
      const store = await open(location);
      const range = { min: 20000, max: 20002 };
      const a = await store.allocate(A, range, (port) => port !== 20000);
      expect(a).toBe(20001);
      expect(await store.allocate(A, range)).toBe(a);
      expect(await store.allocate(B, range)).toBe(20000);
      await store.close();
      const reopened = await open(location);
      expect(await reopened.allocate(A, range)).toBe(a);
      await expect(reopened.allocate("c", { min: 20000, max: 20001 })).rejects.toThrow(/no free pooler port/);
      await reopened.release(B);
      expect(await reopened.allocate("c", { min: 20000, max: 20001 })).toBe(20000);
    });
    it("records a preferred port when it is free, in the range and usable; else the first free one; a recorded port stays", async () => {
      const store = await open(await newLocation());
      const range = { min: 20000, max: 20009 };
      expect(await store.allocate(A, range, () => true, 20005)).toBe(20005);
      // Recorded for A: B cannot have it, and gets the first free port.
      expect(await store.allocate(B, range, () => true, 20005)).toBe(20000);
      // Unusable (another process listens there), or outside the range: not taken.
      expect(await store.allocate("c", range, (port) => port !== 20007, 20007)).toBe(20001);
      expect(await store.allocate("d", range, () => true, 30000)).toBe(20002);
      // A project that has a port keeps it, whatever it prefers now.
      expect(await store.allocate(A, range, () => true, 20009)).toBe(20005);
    });


    it("never gives one port to two projects allocating at once through two stores", async () => {
      const location = await newLocation();
      const stores = [await open(location), await open(location)];
      const range = { min: 21000, max: 21099 };
      const projects = Array.from({ length: 40 }, (_, i) => `project-${i}`);
      const ports = await Promise.all(projects.map((projectId, i) => stores[i % 2]!.allocate(projectId, range)));
      expect(new Set(ports).size).toBe(projects.length);
      // Asked again through the other store, each project keeps its port.
      expect(await Promise.all(projects.map((projectId, i) => stores[(i + 1) % 2]!.allocate(projectId, range)))).toEqual(ports);
    });

    it("records each scheduled slot once, however many stores claim it at once, and knows the newest", async () => {
      const location = await newLocation();
      const stores = [await open(location), await open(location)];
      expect(await stores[0]!.lastScheduledRun()).toBeUndefined();
      const slots = Array.from({ length: 12 }, (_, i) => new Date(Date.UTC(2026, 10, 26, 3, 0, i * 5)));
      const [first, second] = await Promise.all([stores[0]!.claimScheduledRuns(slots, "one"), stores[1]!.claimScheduledRuns([...slots].reverse(), "two")]);
      const claimed = [...first!, ...second!].map((slot) => slot.getTime()).sort((a, b) => a - b);
      expect(claimed).toEqual(slots.map((slot) => slot.getTime()));
      expect(await stores[1]!.claimScheduledRuns([slots[3]!], "two")).toEqual([]);
      expect(await stores[0]!.claimScheduledRuns([], "one")).toEqual([]);
      expect((await stores[1]!.lastScheduledRun())?.getTime()).toBe(slots[11]!.getTime());
      // Old slots are forgotten, but never the newest: the next leader picks up from it.
      await stores[0]!.forgetScheduledRunsBefore(slots[6]!);
      expect(await stores[0]!.claimScheduledRuns(slots, "one")).toEqual(slots.slice(0, 6));
      await stores[0]!.forgetScheduledRunsBefore(new Date(Date.UTC(2027, 0, 1)));
      expect((await stores[1]!.lastScheduledRun())?.getTime()).toBe(slots[11]!.getTime());
      expect(await stores[1]!.claimScheduledRuns(slots, "two")).toHaveLength(11);
    });

    it("keeps backups: newest first per project, by state, patched, deleted", async () => {
      const location = await newLocation();
      const store = await open(location);
      const older = backupRecord("20261126T000000Z-aaaa", A, "2026-11-26T00:00:00Z");
      const newer = backupRecord("20261127T000000Z-bbbb", A, "2026-11-27T00:00:00Z");
      const other = backupRecord("20261127T000000Z-cccc", B, "2026-11-27T00:00:00Z");
      for (const record of [older, newer, other]) await store.insertBackup(record);
      const finishedAt = new Date("2026-11-26T00:01:00Z");
      const succeeded = await store.updateBackup(older.id, {
        state: "succeeded",
        sizeBytes: 5 * 1024 ** 3,
        sha256: "ab".repeat(32),
        finishedAt,
        expiresAt: new Date("2026-12-03T00:00:00Z"),
        verification: "passed",
        verifiedAt: finishedAt,
      });
      expect(succeeded).toMatchObject({ state: "succeeded", sizeBytes: 5 * 1024 ** 3, finishedAt, verification: "passed" });
      await store.close();
      const reopened = await open(location);
      expect((await reopened.listBackups(A)).map((record) => record.id)).toEqual([newer.id, older.id]);
      expect(await reopened.getBackup(A, older.id)).toEqual(succeeded);
      // Another project's id finds nothing.
      expect(await reopened.getBackup(B, older.id)).toBeUndefined();
      expect((await reopened.listBackupsByState("running")).map((record) => record.id)).toEqual([newer.id, other.id]);
      expect(await reopened.updateBackup(newer.id, {})).toEqual(newer);
      await expect(reopened.updateBackup("20261101T000000Z-none", { state: "failed" })).rejects.toThrow(/no backup/);
      await reopened.deleteBackup(older.id);
      expect((await reopened.listBackups(A)).map((record) => record.id)).toEqual([newer.id]);
    });

    it("keeps a base backup's format, WAL generation and start segment", async () => {
      const location = await newLocation();
      const store = await open(location);
      const base = newBackupRecord({ id: "20261128T000000Z-dddd", projectId: A, slug: "my-app", kind: "scheduled", startedAt: new Date("2026-11-28T00:00:00Z"), format: "base" });
      await store.insertBackup(base);
      expect(await store.getBackup(A, base.id)).toMatchObject({ format: "base", walGeneration: null, walStartSegment: null });
      const finished = await store.updateBackup(base.id, { state: "succeeded", walGeneration: "20261128T000000Z", walStartSegment: "000000010000000000000002" });
      await store.close();
      const reopened = await open(location);
      expect(await reopened.getBackup(A, base.id)).toEqual(finished);
      expect(finished).toMatchObject({ format: "base", walGeneration: "20261128T000000Z", walStartSegment: "000000010000000000000002" });
      // A dump stays a dump.
      const dump = backupRecord("20261128T000001Z-eeee", A, "2026-11-28T00:00:01Z");
      await reopened.insertBackup(dump);
      expect(await reopened.getBackup(A, dump.id)).toMatchObject({ format: "dump", walGeneration: null, walStartSegment: null });
    });

    it("answers ping while open, and rejects it once closed", async () => {
      const store = await open(await newLocation());
      await expect(store.ping()).resolves.toBeUndefined();
      await store.close();
      await expect(store.ping()).rejects.toThrow();
      // Closing twice is harmless (the app closes on every way out).
      await expect(store.close()).resolves.toBeUndefined();
    });

    it("migrates a new state once when two services start on it together, and opens it again as it is", async () => {
      const location = await newLocation();
      const store = (await Promise.all([open(location), open(location)]))[0]!;
      await store.insertDatabase(databaseRecord(A, "my-app"));
      await store.close();
      // A second start, and a second service starting at the same time.
      const [first, second] = await Promise.all([open(location), open(location)]);
      expect(await first.listDatabases()).toHaveLength(1);
      expect(await second.listDatabases()).toHaveLength(1);
    });

    it("refuses, with one clear error, a state written by a newer release, and leaves it as it was", async () => {
      const location = await newLocation();
      const store = await open(location);
      await store.insertDatabase(databaseRecord(A, "my-app"));
      await store.close();
      await location.forgeNewerSchema();
      const refused = await location.open().then(
        (unexpected) => unexpected.close().then(() => undefined),
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(StateTooNewError);
      expect((refused as Error).message).toMatch(/is at schema version \d+, newer than this sota-db knows \(\d+\)/);
    });

    it("keeps off-host copy records: created, replaced, listed per project and in all, deleted, across reopen", async () => {
      const location = await newLocation();
      let store = await open(location);
      const pending = newOffsiteCopyRecord("20261126t000000000z-aaaaaaaaaaaa", A);
      const other: OffsiteCopyRecord = { ...pending, backupId: "20261126t000000000z-bbbbbbbbbbbb", projectId: B };
      await store.putOffsiteCopy(pending);
      await store.putOffsiteCopy(other);
      const failed: OffsiteCopyRecord = { ...pending, state: "failed", attempts: 1, error: "upload refused", nextAttemptAt: new Date("2026-11-26T00:01:00Z") };
      await store.putOffsiteCopy(failed);
      expect(await store.listOffsiteCopies(A)).toEqual([failed]);
      const copied: OffsiteCopyRecord = {
        ...failed,
        state: "copied",
        attempts: 2,
        error: null,
        objectKey: `sota-db/${A}/backups/${pending.backupId}.dump`,
        sha256: "a".repeat(64),
        sizeBytes: 5_000_000_000,
        copiedAt: new Date("2026-11-26T00:02:00Z"),
        nextAttemptAt: null,
      };
      await store.putOffsiteCopy(copied);
      await store.close();
      store = await open(location);
      expect(await store.listOffsiteCopies(A)).toEqual([copied]);
      expect(await store.listOffsiteCopies()).toEqual([copied, other]);
      await store.deleteOffsiteCopy(copied.backupId);
      expect(await store.listOffsiteCopies()).toEqual([other]);
    });

    it("keeps the WAL files copied off-host, per project, ordered, replaced in place", async () => {
      const store = await open(await newLocation());
      const segment = (generation: string, file: string, at: string) => ({
        projectId: A,
        generation,
        file,
        sha256: "b".repeat(64),
        sizeBytes: 16 * 1024 * 1024,
        copiedAt: new Date(at),
      });
      await store.putOffsiteWal(segment("20261126T000000Z", "000000010000000000000002", "2026-11-26T00:00:02Z"));
      await store.putOffsiteWal(segment("20261126T000000Z", "000000010000000000000001", "2026-11-26T00:00:01Z"));
      await store.putOffsiteWal({ ...segment("20261125T000000Z", "000000010000000000000009", "2026-11-25T00:00:00Z"), projectId: B });
      const partial = segment("20261126T000000Z", "000000010000000000000003.partial", "2026-11-26T00:00:03Z");
      await store.putOffsiteWal(partial);
      const newer = { ...partial, sizeBytes: 4096, sha256: "c".repeat(64), copiedAt: new Date("2026-11-26T00:00:04Z") };
      await store.putOffsiteWal(newer);
      expect((await store.listOffsiteWal(A)).map((record) => record.file)).toEqual([
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003.partial",
      ]);
      expect((await store.listOffsiteWal(A))[2]).toEqual(newer);
      await store.deleteOffsiteWal(A, "20261126T000000Z", "000000010000000000000001");
      expect((await store.listOffsiteWal(A)).map((record) => record.file)).toEqual(["000000010000000000000002", "000000010000000000000003.partial"]);
      expect(await store.listOffsiteWal(B)).toHaveLength(1);
      expect((await store.listOffsiteWal()).map((record) => record.projectId)).toEqual([A, A, B].sort());
    });
  });
}
