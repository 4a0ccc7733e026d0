import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { newDatabaseRecord, type DatabaseRecord } from "../../src/store/records.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { SlugTakenError } from "../../src/store/store.js";

const dirs: string[] = [];
function storePath(): string {
  const dir = mkdtempSync(join(tmpdir(), "sota-store-"));
  dirs.push(dir);
  return join(dir, "state.db");
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function record(projectId: string, slug: string): DatabaseRecord {
  return newDatabaseRecord({ projectId, slug, runtime: "process", sealedPassword: "v1.x.y" }, new Date("2026-11-26T00:00:00Z"));
}

const A = "550e8400-e29b-41d4-a716-446655440000";
const B = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

describe("SqliteStore", () => {
  it("keeps records across reopen", () => {
    const path = storePath();
    const store = new SqliteStore(path);
    store.insertDatabase(record(A, "my-app"));
    store.updateDatabase(A, {
      state: "ready",
      port: 16432,
      pooler: { version: "1.18.0", poolMode: "transaction", defaultPoolSize: 20, maxClientConn: 100, preparedStatementsSupported: false, maxPreparedStatements: 0 },
    });
    store.close();
    const reopened = new SqliteStore(path);
    expect(reopened.getDatabase(A)).toMatchObject({ slug: "my-app", state: "ready", port: 16432, pooler: { defaultPoolSize: 20 } });
    expect(reopened.getDatabaseBySlug("my-app")?.projectId).toBe(A);
    expect(reopened.countDatabasesByState()).toEqual({ ready: 1 });
    reopened.close();
  });

  it("refuses a slug another project owns, and changes nothing", () => {
    const store = new SqliteStore(storePath());
    store.insertDatabase(record(A, "my-app"));
    expect(() => store.insertDatabase(record(B, "my-app"))).toThrow(SlugTakenError);
    expect(store.getDatabase(B)).toBeUndefined();
    expect(store.listDatabases()).toHaveLength(1);
    store.close();
  });

  it("allocates each project its own pooler port, durably, and skips unusable ports", () => {
    const path = storePath();
    const store = new SqliteStore(path);
    const range = { min: 20000, max: 20002 };
    const a = store.allocate(A, range, (port) => port !== 20000);
    expect(a).toBe(20001);
    expect(store.allocate(A, range)).toBe(a);
    const b = store.allocate(B, range);
    expect(b).toBe(20000);
    store.close();
    const reopened = new SqliteStore(path);
    expect(reopened.allocate(A, range)).toBe(a);
    expect(() => reopened.allocate("c", { min: 20000, max: 20001 })).toThrow(/no free pooler port/);
    reopened.release(B);
    expect(reopened.allocate("c", { min: 20000, max: 20001 })).toBe(20000);
    reopened.close();
  });
});
