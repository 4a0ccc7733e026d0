import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latestVersion, type Migration } from "../../src/store/migrations.js";
import { openStateStore } from "../../src/store/open-store.js";
import { migratePostgres, POSTGRES_MIGRATIONS } from "../../src/store/postgres-migrations.js";
import { PostgresStore } from "../../src/store/postgres-store.js";
import { startStatePostgres, type StatePostgres } from "../support/state-postgres.js";
import { A, databaseRecord, storeContract } from "../support/store-contract.js";

let cluster: StatePostgres;
beforeAll(async () => {
  cluster = await startStatePostgres();
});
afterAll(async () => {
  await cluster?.stop();
});

async function sql(url: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

storeContract("PostgresStore", async () => {
  const url = await cluster.createDatabase();
  return {
    open: () => PostgresStore.open(url),
    forgeNewerSchema: async () => {
      await sql(url, `INSERT INTO sota.migrations (version, description) VALUES (${latestVersion(POSTGRES_MIGRATIONS) + 1}, 'from the future')`);
    },
  };
});

describe("PostgresStore", () => {
  it("is what SOTA_STATE_URL selects, and keeps its tables in the sota schema at the latest version", async () => {
    const url = await cluster.createDatabase();
    const store = await openStateStore({ dataDir: "/nonexistent", stateUrl: url });
    try {
      expect(store).toBeInstanceOf(PostgresStore);
      await store.insertDatabase(databaseRecord(A, "my-app"));
    } finally {
      await store.close();
    }
    const tables = await sql(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'sota' ORDER BY table_name");
    expect(tables.rows.map((row) => row.table_name)).toEqual(["backups", "databases", "migrations", "offsite_copies", "offsite_wal", "pooler_ports", "scheduled_runs"]);
    const publicTables = await sql(url, "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'");
    expect(publicTables.rows[0].n).toBe(0);
    const versions = await sql(url, "SELECT max(version) AS v FROM sota.migrations");
    expect(versions.rows[0].v).toBe(latestVersion(POSTGRES_MIGRATIONS));
    // Sealed values stay sealed in the shared state: what the service stored, not a plaintext.
    const sealed = await sql(url, "SELECT sealed_password FROM sota.databases");
    expect(sealed.rows[0].sealed_password).toBe("v1.k.sealed");
  });

  it("fails to open with a clear error that carries neither the URL nor its password", async () => {
    const url = await cluster.createDatabase();
    const wrong = url.replace(/:([0-9a-f]+)@/, ":not-the-password-4711@");
    const refused = await PostgresStore.open(wrong).then(
      (unexpected) => unexpected.close().then(() => undefined),
      (error: unknown) => error as Error,
    );
    expect(refused?.message).toMatch(/^cannot connect to the PostgreSQL state store \(SOTA_STATE_URL\): .*password authentication failed/);
    expect(refused?.message).not.toContain("not-the-password-4711");
    expect(refused?.message).not.toContain(wrong);
    const unreachable = "postgres://sota:hunter2@127.0.0.1:1/sota";
    const down = await PostgresStore.open(unreachable).catch((error: unknown) => error as Error);
    expect((down as Error).message).toMatch(/^cannot connect to the PostgreSQL state store \(SOTA_STATE_URL\)/);
    expect((down as Error).message).not.toContain("hunter2");
  });

  it("applies later migrations in order, once, and rolls a failing one back whole", async () => {
    const url = await cluster.createDatabase();
    const n = latestVersion(POSTGRES_MIGRATIONS);
    const next: Migration[] = [
      ...POSTGRES_MIGRATIONS,
      { version: n + 1, description: "a column", sql: "ALTER TABLE sota.databases ADD COLUMN note TEXT" },
      { version: n + 2, description: "an index", sql: "CREATE INDEX databases_by_note ON sota.databases (note)" },
    ];
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await migratePostgres(client);
      await migratePostgres(client, next);
      await migratePostgres(client, next);
      const applied = await client.query("SELECT version FROM sota.migrations ORDER BY version");
      expect(applied.rows.map((row) => row.version)).toEqual(next.map((migration) => migration.version));
      const broken: Migration[] = [...next, { version: n + 3, description: "ok", sql: "CREATE TABLE sota.extra (x int)" }, { version: n + 4, description: "broken", sql: "NOT SQL" }];
      await expect(migratePostgres(client, broken)).rejects.toThrow();
      expect((await client.query("SELECT max(version) AS v FROM sota.migrations")).rows[0].v).toBe(n + 2);
      expect((await client.query("SELECT to_regclass('sota.extra') AS t")).rows[0].t).toBeNull();
    } finally {
      await client.end();
    }
  });
});
