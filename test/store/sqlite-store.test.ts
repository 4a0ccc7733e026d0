import Database from "better-sqlite3";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { latestVersion, StateTooNewError, type Migration } from "../../src/store/migrations.js";
import { migrateSqlite, SQLITE_MIGRATIONS, sqliteSchemaVersion } from "../../src/store/sqlite-migrations.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { A, B, storeContract } from "../support/store-contract.js";

const root = mkdtempSync(join(tmpdir(), "sota-store-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let files = 0;
const newPath = () => join(root, `state-${++files}.db`);

function raw(path: string, work: (db: Database.Database) => void): void {
  const db = new Database(path);
  try {
    work(db);
  } finally {
    db.close();
  }
}

storeContract("SqliteStore", async () => {
  const path = newPath();
  return {
    open: async () => new SqliteStore(path),
    forgeNewerSchema: async () => raw(path, (db) => db.pragma(`user_version = ${latestVersion(SQLITE_MIGRATIONS) + 1}`)),
  };
});

// The schema exactly as the release before schema versions created it (no user_version).
const UNVERSIONED_SCHEMA = `
CREATE TABLE IF NOT EXISTS databases (
  project_id       TEXT PRIMARY KEY,
  slug             TEXT NOT NULL UNIQUE,
  state            TEXT NOT NULL,
  runtime          TEXT NOT NULL,
  sealed_password  TEXT NOT NULL,
  sealed_url       TEXT,
  host             TEXT,
  port             INTEGER,
  network          TEXT,
  postgres_version TEXT,
  pooler_json      TEXT,
  error            TEXT,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pooler_ports (
  port       INTEGER PRIMARY KEY,
  project_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS backups (
  id                 TEXT PRIMARY KEY,
  project_id         TEXT NOT NULL,
  slug               TEXT NOT NULL,
  kind               TEXT NOT NULL,
  state              TEXT NOT NULL,
  size_bytes         INTEGER,
  sha256             TEXT,
  started_at         INTEGER NOT NULL,
  finished_at        INTEGER,
  expires_at         INTEGER,
  error              TEXT,
  verification       TEXT,
  verified_at        INTEGER,
  verification_error TEXT
);
CREATE INDEX IF NOT EXISTS backups_by_project ON backups (project_id, started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS backups_by_state ON backups (state);
`;

describe("SqliteStore migrations", () => {
  it("migrates a state.db written before schema versions in place, keeping every project, URL, port and backup", async () => {
    const path = newPath();
    const pooler = '{"version":"1.24.1","poolMode":"transaction","defaultPoolSize":20,"maxClientConn":100,"preparedStatementsSupported":true,"maxPreparedStatements":200}';
    raw(path, (db) => {
      db.pragma("journal_mode = WAL");
      db.exec(UNVERSIONED_SCHEMA);
      const insert = db.prepare(
        `INSERT INTO databases (project_id, slug, state, runtime, sealed_password, sealed_url, host, port, network, postgres_version, pooler_json, error, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      insert.run(A, "shop", "ready", "process", "v1.k.pw-a", "v1.k.url-a", "127.0.0.1", 16432, null, "17.2", pooler, null, 1_764_000_000_000, 1_764_000_100_000);
      insert.run(B, "blog", "failed", "docker", "v1.k.pw-b", null, null, null, "traefik-public", null, null, "image pull failed", 1_764_000_200_000, 1_764_000_300_000);
      db.prepare("INSERT INTO pooler_ports (port, project_id) VALUES (?, ?)").run(16432, A);
      db.prepare(
        `INSERT INTO backups (id, project_id, slug, kind, state, size_bytes, sha256, started_at, finished_at, expires_at, error, verification, verified_at, verification_error)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run("20261126T030000Z-abcd", A, "shop", "scheduled", "succeeded", 1234, "ab".repeat(32), 1_764_126_000_000, 1_764_126_060_000, 1_764_730_800_000, null, "passed", 1_764_126_120_000, null);
      expect(sqliteSchemaVersion(db)).toBe(0);
    });

    const store = new SqliteStore(path);
    try {
      expect(await store.listDatabases()).toEqual([
        {
          projectId: A, slug: "shop", state: "ready", runtime: "process", sealedPassword: "v1.k.pw-a", sealedUrl: "v1.k.url-a",
          host: "127.0.0.1", port: 16432, network: null, postgresVersion: "17.2", pooler: JSON.parse(pooler), error: null,
          createdAt: new Date(1_764_000_000_000), updatedAt: new Date(1_764_000_100_000),
        },
        {
          projectId: B, slug: "blog", state: "failed", runtime: "docker", sealedPassword: "v1.k.pw-b", sealedUrl: null,
          host: null, port: null, network: "traefik-public", postgresVersion: null, pooler: null, error: "image pull failed",
          createdAt: new Date(1_764_000_200_000), updatedAt: new Date(1_764_000_300_000),
        },
      ]);
      expect(await store.allocate(A, { min: 16432, max: 17431 })).toBe(16432);
      expect(await store.allocate(B, { min: 16432, max: 17431 })).toBe(16433);
      expect(await store.listBackups(A)).toEqual([
        {
          id: "20261126T030000Z-abcd", projectId: A, slug: "shop", kind: "scheduled", state: "succeeded", sizeBytes: 1234, sha256: "ab".repeat(32),
          startedAt: new Date(1_764_126_000_000), finishedAt: new Date(1_764_126_060_000), expiresAt: new Date(1_764_730_800_000),
          error: null, verification: "passed", verifiedAt: new Date(1_764_126_120_000), verificationError: null,
          // Every backup of a release before base backups is a dump.
          format: "dump", walGeneration: null, walStartSegment: null,
        },
      ]);
    } finally {
      await store.close();
    }
    raw(path, (db) => expect(sqliteSchemaVersion(db)).toBe(latestVersion(SQLITE_MIGRATIONS)));
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("applies later migrations in order, once, and rolls a failing one back whole", () => {
    const path = newPath();
    const n = latestVersion(SQLITE_MIGRATIONS);
    const next: Migration[] = [
      ...SQLITE_MIGRATIONS,
      { version: n + 1, description: "a column", sql: "ALTER TABLE databases ADD COLUMN note TEXT" },
      { version: n + 2, description: "an index", sql: "CREATE INDEX databases_by_note ON databases (note)" },
    ];
    raw(path, (db) => {
      migrateSqlite(db, SQLITE_MIGRATIONS);
      migrateSqlite(db, next);
      migrateSqlite(db, next);
      expect(sqliteSchemaVersion(db)).toBe(n + 2);
      const broken: Migration[] = [...next, { version: n + 3, description: "ok", sql: "CREATE TABLE extra (x INTEGER)" }, { version: n + 4, description: "broken", sql: "NOT SQL" }];
      expect(() => migrateSqlite(db, broken)).toThrow();
      expect(sqliteSchemaVersion(db)).toBe(n + 2);
      expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'extra'").get()).toBeUndefined();
    });
  });

  it("refuses a migration list with a gap", () => {
    raw(":memory:", (db) => {
      expect(() => migrateSqlite(db, [{ version: 2, description: "gap", sql: "" }])).toThrow(/migration 1 is numbered 2/);
    });
  });

  it("names the state and both versions when the state is newer", () => {
    const path = newPath();
    raw(path, (db) => db.pragma("user_version = 99"));
    expect(() => new SqliteStore(path)).toThrow(StateTooNewError);
    expect(() => new SqliteStore(path)).toThrow(
      new RegExp(`SQLite state \\(state\\.db\\) is at schema version 99, newer than this sota-db knows \\(${latestVersion(SQLITE_MIGRATIONS)}\\)`),
    );
  });
});
