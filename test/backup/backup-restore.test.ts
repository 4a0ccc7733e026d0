// Backups against a real PostgreSQL + PgBouncer (process driver): round trip
// through the app's own URL, a restore under an open transaction, checksum
// mismatch, verification.
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupFilePath } from "../../src/backup/backup-paths.js";
import { newBackupId } from "../../src/service/names.js";
import { metricValue } from "../support/backup-fakes.js";
import { startBackupServer, type BackupServer } from "../support/backup-postgres.js";

let server: BackupServer;
beforeAll(async () => {
  // A slug with '-': every name the restore builds must be quoted.
  server = await startBackupServer(7, "shop-db");
});
afterAll(() => server?.close());

const CUSTOMERS = "SELECT id, name, balance::text AS balance FROM customers ORDER BY id";

async function seedShop(rows: number): Promise<void> {
  await server.appQuery(`DROP TABLE IF EXISTS customers, later CASCADE`);
  await server.appQuery(`CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, balance numeric(10,2) NOT NULL)`);
  await server.appQuery(`CREATE INDEX customers_by_name ON customers (name)`);
  await server.appQuery(`CREATE OR REPLACE VIEW rich AS SELECT name FROM customers WHERE balance > 500`);
  await server.appQuery(
    `INSERT INTO customers (name, balance) SELECT 'customer ' || i, (i * 7 % 1000)::numeric(10,2) FROM generate_series(1, $1) AS i`,
    [rows],
  );
}

async function changeShop(): Promise<void> {
  await server.appQuery(`UPDATE customers SET balance = balance + 1 WHERE id % 3 = 0`);
  await server.appQuery(`DELETE FROM customers WHERE id % 5 = 0`);
  await server.appQuery(`INSERT INTO customers (name, balance) VALUES ('late arrival', 1)`);
  await server.appQuery(`CREATE TABLE later (x int)`);
}

async function scratchDatabases(): Promise<string[]> {
  const rows = await server.runtime.adminQuery(server.target, `SELECT datname FROM pg_database WHERE datname LIKE 'sota\\_%' ORDER BY 1`);
  return rows.map((row) => row["datname"]!);
}

describe("restore", () => {
  it("brings rows, schema and database settings back to the backup's, through the same DATABASE_URL", async () => {
    const { manager, target } = server;
    await seedShop(500);
    await server.appQuery(`ALTER DATABASE "shop-db" SET work_mem = '7MB'`);
    const atBackup = await server.appQuery(CUSTOMERS);
    const backup = await manager.create(target, "manual", { wait: true });
    expect(backup.state).toBe("succeeded");

    await changeShop();
    const changed = await server.appQuery(CUSTOMERS);
    expect(changed).not.toEqual(atBackup);
    // An app connection open across the restore: PgBouncer keeps it, pauses it, and resumes it on the new database.
    const held = server.appClient();
    await held.connect();
    await held.query("SELECT 1");

    const { restored, safety } = await manager.restore(target, backup.id);
    expect(restored.id).toBe(backup.id);
    expect(safety).toMatchObject({ kind: "safety", state: "succeeded" });

    expect(await server.appQuery(CUSTOMERS)).toEqual(atBackup);
    expect((await held.query<{ n: string }>("SELECT count(*)::text AS n FROM customers")).rows[0]!.n).toBe("500");
    await held.end();
    expect(await server.appQuery(`SELECT to_regclass('public.later') AS t`)).toEqual([{ t: null }]);
    expect(await server.appQuery(`SELECT count(*)::int AS n FROM rich`)).toEqual([{ n: atBackup.filter((r) => Number(r["balance"]) > 500).length }]);
    // The sequence came back too: the next id follows the backup's last one.
    expect(await server.appQuery(`INSERT INTO customers (name, balance) VALUES ('new', 0) RETURNING id`)).toEqual([{ id: 501 }]);
    expect(await server.appQuery(`SHOW work_mem`)).toEqual([{ work_mem: "7MB" }]);
    const [owners] = await server.runtime.adminQuery(
      target,
      `SELECT pg_get_userbyid(d.datdba) AS db_owner, (SELECT tableowner FROM pg_tables WHERE tablename = 'customers') AS table_owner
         FROM pg_database d WHERE d.datname = current_database()`,
      "shop-db",
    );
    expect(owners).toEqual({ db_owner: "app_shop-db", table_owner: "app_shop-db" });
    expect(await scratchDatabases()).toEqual([]);

    // The safety backup holds the state the restore replaced.
    await server.manager.restore(target, safety.id);
    expect(await server.appQuery(CUSTOMERS)).toEqual(changed);
    expect(manager.list(target.projectId).filter((r) => r.kind === "safety")).toHaveLength(2);
  });

  it("does not wait forever for a transaction left open: its session is ended after the grace period", async () => {
    await seedShop(50);
    const atBackup = await server.appQuery(CUSTOMERS);
    const backup = await server.manager.create(server.target, "manual", { wait: true });
    const idle = server.appClient();
    await idle.connect();
    await idle.query("BEGIN");
    await idle.query("UPDATE customers SET balance = 0");
    const started = Date.now();
    await server.manager.restore(server.target, backup.id);
    expect(Date.now() - started).toBeLessThan(20_000);
    await expect(idle.query("COMMIT")).rejects.toThrow();
    await idle.end().catch(() => undefined);
    expect(await server.appQuery(CUSTOMERS)).toEqual(atBackup);
  });

  it("refuses a backup whose checksum does not match (DataLoss) and changes nothing", async () => {
    const { manager, target } = server;
    await seedShop(20);
    const backup = await manager.create(target, "manual", { wait: true });
    await server.appQuery(`DELETE FROM customers WHERE id > 10`);
    const before = await server.appQuery(CUSTOMERS);
    const backupsBefore = manager.list(target.projectId).length;

    const path = backupFilePath(server.backupDir, target.slug, backup.id);
    const bytes = await readFile(path);
    const tampered = Buffer.from(bytes);
    tampered[Math.floor(tampered.length / 2)]! ^= 0xff;
    await writeFile(path, tampered);

    await expect(manager.restore(target, backup.id)).rejects.toMatchObject({ code: Code.DataLoss, rawMessage: expect.stringMatching(/checksum mismatch/) });
    expect(await server.appQuery(CUSTOMERS)).toEqual(before);
    // Refused before anything happened: not even a safety backup was taken.
    expect(manager.list(target.projectId)).toHaveLength(backupsBefore);

    const verified = await manager.verify(target, backup.id);
    expect(verified).toMatchObject({ verification: "failed", verificationError: expect.stringMatching(/checksum mismatch/) });
    await writeFile(path, bytes);
  });
});

describe("verify", () => {
  it("records passed for a backup that loads, and leaves no scratch database", async () => {
    await seedShop(100);
    const backup = await server.manager.create(server.target, "manual", { wait: true });
    const verified = await server.manager.verify(server.target, backup.id);
    expect(verified).toMatchObject({ id: backup.id, verification: "passed", verificationError: null });
    expect(verified.verifiedAt).toBeInstanceOf(Date);
    expect(server.manager.list(server.target.projectId).find((r) => r.id === backup.id)?.verification).toBe("passed");
    expect(await scratchDatabases()).toEqual([]);
  });

  it("records failed, with the reason, for a backup that does not load", async () => {
    const { manager, target, store } = server;
    // A file whose checksum is right but whose SQL fails half way.
    const good = await manager.create(target, "manual", { wait: true });
    const broken = gzipSync("CREATE TABLE fine (x int);\nSELECT 1/0;\n");
    const id = newBackupId(new Date());
    await writeFile(backupFilePath(server.backupDir, target.slug, id), broken);
    store.insertBackup({
      ...good,
      id,
      sizeBytes: broken.length,
      sha256: createHash("sha256").update(broken).digest("hex"),
    });
    const failuresBefore = (await metricValue(server.metrics, "sota_backup_failures_total", { kind: "verify" })) ?? 0;
    const verified = await manager.verify(target, id);
    expect(verified).toMatchObject({ verification: "failed", verificationError: expect.stringMatching(/division by zero/) });
    expect(await metricValue(server.metrics, "sota_backup_failures_total", { kind: "verify" })).toBe(failuresBefore + 1);
    expect(await scratchDatabases()).toEqual([]);
    // Restoring it fails cleanly: the live database is untouched.
    const before = await server.appQuery(CUSTOMERS);
    await expect(manager.restore(target, id)).rejects.toMatchObject({ rawMessage: expect.stringMatching(/did not load.*database was not changed/) });
    expect(await server.appQuery(CUSTOMERS)).toEqual(before);
    expect(await scratchDatabases()).toEqual([]);
  });
});

describe("the backup log", () => {
  it("names what happened and never holds the password", () => {
    const text = server.bed.logs.text();
    expect(text).toContain("database restored from backup");
    expect(text).toContain("transactions still open after the grace period");
    expect(text).not.toContain(server.password);
  });
});
