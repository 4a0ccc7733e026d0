// The backup behaviour every Runtime driver must show, run against each
// driver by its own test file:
//
//   describeBackupContract("process", async () => ({ runtime, psqlCommand, cleanup, logs }));
//
// One runtime and one database per suite (each costs real seconds); the tests
// reach the database as an app does, with the app role through the pooler's
// loopback endpoint, and the service's side only through the Runtime port.
import { spawn } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackupManager, type BackupManager } from "../../src/backup/index.js";
import { backupFilePath } from "../../src/backup/backup-paths.js";
import { Metrics } from "../../src/metrics.js";
import type { Runtime, RuntimeTarget } from "../../src/runtime/runtime.js";
import { backupDownloadRoute } from "../../src/server/backup-download-route.js";
import { hashToken, TokenRegistry } from "../../src/server/tokens.js";
import { newBackupId } from "../../src/names.js";
import type { BackupRecord } from "../../src/store/records.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { createLogger, type Logger } from "../../src/log.js";
import { metricValue } from "./backup-fakes.js";

export interface BackupHarness {
  /** A fresh runtime on empty state. */
  readonly runtime: Runtime;
  /**
   * argv of a psql, as the server's superuser, reading SQL on stdin into
   * `database` (process: psql on the unix socket; docker: docker exec -i ... psql).
   */
  psqlCommand(target: RuntimeTarget, database: string): string[];
  /** Closes the runtime and removes everything the suite created. */
  cleanup(): Promise<void>;
  /** Everything the driver logged so far, when the harness captures it. */
  logs?(): string;
}

const CUSTOMERS = "SELECT id, name, balance::text AS balance FROM public.customers ORDER BY id";

export function describeBackupContract(name: string, setup: () => Promise<BackupHarness>): void {
  describe(`Backup contract: ${name}`, () => {
    let harness: BackupHarness | undefined;
    let runtime: Runtime;
    let manager: BackupManager;
    let store: SqliteStore;
    let metrics: Metrics;
    let backupDir: string;
    let workDir: string;
    const logLines: string[] = [];
    const logger: Logger = createLogger({ level: "debug", destination: { write: (line: string) => void logLines.push(line) } });
    // A slug with '-': every name a restore builds must be quoted.
    const target = { projectId: randomUUID(), slug: `shop-${randomBytes(3).toString("hex")}` };
    const password = randomBytes(16).toString("hex");
    let pooler: { host: string; port: number };

    beforeAll(async () => {
      harness = await setup();
      runtime = harness.runtime;
      const ensured = await runtime.ensure({ ...target, password });
      if (!ensured.endpoint.loopback) throw new Error("the backup contract needs a loopback endpoint to reach the pooler");
      pooler = ensured.endpoint.loopback;
      workDir = await mkdtemp(join(tmpdir(), "sota-backup-contract-"));
      backupDir = join(workDir, "backups");
      store = new SqliteStore(join(workDir, "state.db"));
      metrics = new Metrics({ defaultMetrics: false });
      manager = await createBackupManager({ store, runtime, metrics, logger, dir: backupDir, retentionDays: 7, pauseGraceMs: 1_000 });
    });

    afterAll(async () => {
      await manager?.close();
      await store?.close();
      await harness?.cleanup();
      if (workDir) await rm(workDir, { recursive: true, force: true });
    });

    /** The app role through the pooler: DATABASE_URL's database, or the session URL's `{slug}_session`. */
    function appClient(database = target.slug): pg.Client {
      const client = new pg.Client({ host: pooler.host, port: pooler.port, user: `app_${target.slug}`, password, database });
      client.on("error", () => undefined);
      return client;
    }

    async function appQuery<T extends pg.QueryResultRow = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<T[]> {
      const client = appClient();
      await client.connect();
      try {
        return (await client.query<T>(sql, values)).rows;
      } finally {
        await client.end();
      }
    }

    async function seedShop(rows: number): Promise<void> {
      await appQuery(`DROP TABLE IF EXISTS customers, later CASCADE`);
      await appQuery(`CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, balance numeric(10,2) NOT NULL)`);
      await appQuery(`CREATE INDEX customers_by_name ON customers (name)`);
      await appQuery(`CREATE OR REPLACE VIEW rich AS SELECT name FROM customers WHERE balance > 500`);
      await appQuery(
        `INSERT INTO customers (name, balance) SELECT 'customer ' || i, (i * 7 % 1000)::numeric(10,2) FROM generate_series(1, $1) AS i`,
        [rows],
      );
    }

    async function changeShop(): Promise<void> {
      await appQuery(`UPDATE customers SET balance = balance + 1 WHERE id % 3 = 0`);
      await appQuery(`DELETE FROM customers WHERE id % 5 = 0`);
      await appQuery(`INSERT INTO customers (name, balance) VALUES ('late arrival', 1)`);
      await appQuery(`CREATE TABLE later (x int)`);
    }

    async function scratchDatabases(): Promise<string[]> {
      const rows = await runtime.adminQuery(target, `SELECT datname FROM pg_database WHERE datname LIKE 'sota\\_%' ORDER BY 1`);
      return rows.map((row) => row["datname"]!);
    }

    describe("restore", () => {
      it("brings rows, schema and database settings back to the backup's, through the same DATABASE_URL", async () => {
        await seedShop(500);
        await appQuery(`ALTER DATABASE "${target.slug}" SET work_mem = '7MB'`);
        const atBackup = await appQuery(CUSTOMERS);
        const backup = await manager.create(target, "manual", { wait: true });
        expect(backup.state).toBe("succeeded");

        await changeShop();
        const changed = await appQuery(CUSTOMERS);
        expect(changed).not.toEqual(atBackup);
        // An app connection open across the restore: the pooler keeps it, pauses it, resumes it on the new database.
        const held = appClient();
        await held.connect();
        await held.query("SELECT 1");

        const { restored, safety } = await manager.restore(target, backup.id);
        expect(restored.id).toBe(backup.id);
        expect(safety).toMatchObject({ kind: "safety", state: "succeeded" });

        expect(await appQuery(CUSTOMERS)).toEqual(atBackup);
        expect((await held.query<{ n: string }>("SELECT count(*)::text AS n FROM customers")).rows[0]!.n).toBe("500");
        await held.end();
        expect(await appQuery(`SELECT to_regclass('public.later') AS t`)).toEqual([{ t: null }]);
        expect(await appQuery(`SELECT count(*)::int AS n FROM rich`)).toEqual([{ n: atBackup.filter((r) => Number(r["balance"]) > 500).length }]);
        // The sequence came back too: the next id follows the backup's last one.
        expect(await appQuery(`INSERT INTO customers (name, balance) VALUES ('new', 0) RETURNING id`)).toEqual([{ id: 501 }]);
        expect(await appQuery(`SHOW work_mem`)).toEqual([{ work_mem: "7MB" }]);
        const [owners] = await runtime.adminQuery(
          target,
          `SELECT pg_get_userbyid(d.datdba) AS db_owner, (SELECT tableowner FROM pg_tables WHERE tablename = 'customers') AS table_owner
             FROM pg_database d WHERE d.datname = current_database()`,
          target.slug,
        );
        expect(owners).toEqual({ db_owner: `app_${target.slug}`, table_owner: `app_${target.slug}` });
        expect(await scratchDatabases()).toEqual([]);

        // The safety backup holds the state the restore replaced.
        await manager.restore(target, safety.id);
        expect(await appQuery(CUSTOMERS)).toEqual(changed);
        expect((await manager.list(target.projectId)).filter((r) => r.kind === "safety")).toHaveLength(2);
      });

      it("does not wait forever for a transaction left open: its session is ended after the grace period", async () => {
        await seedShop(50);
        const atBackup = await appQuery(CUSTOMERS);
        const backup = await manager.create(target, "manual", { wait: true });
        const idle = appClient();
        await idle.connect();
        await idle.query("BEGIN");
        await idle.query("UPDATE customers SET balance = 0");
        const started = Date.now();
        await manager.restore(target, backup.id);
        expect(Date.now() - started).toBeLessThan(20_000);
        await expect(idle.query("COMMIT")).rejects.toThrow();
        await idle.end().catch(() => undefined);
        expect(await appQuery(CUSTOMERS)).toEqual(atBackup);
      });

      it("holds the session URL's clients too: a worker that reconnects at once neither blocks the swap nor sees another database", async () => {
        await seedShop(50);
        const atBackup = await appQuery(CUSTOMERS);
        const backup = await manager.create(target, "manual", { wait: true });
        await changeShop();
        const changed = await appQuery(CUSTOMERS);
        // A LISTEN worker, a migration runner: on the session URL, back as soon as it is dropped.
        let working = true;
        const counts = new Set<number>();
        const worker = (async () => {
          while (working) {
            const client = appClient(`${target.slug}_session`);
            try {
              await client.connect();
              while (working) {
                const rows = (await client.query<{ n: number }>("SELECT count(*)::int AS n FROM public.customers")).rows;
                counts.add(rows[0]!.n);
              }
            } catch {
              // Dropped by the restore: reconnect at once.
            } finally {
              await client.end().catch(() => undefined);
            }
          }
        })();
        try {
          await new Promise((resolve) => setTimeout(resolve, 200));
          await manager.restore(target, backup.id);
          await new Promise((resolve) => setTimeout(resolve, 200));
        } finally {
          working = false;
          await worker;
        }
        expect(await appQuery(CUSTOMERS)).toEqual(atBackup);
        // It saw the database before and after, nothing else.
        expect([...counts].every((n) => n === changed.length || n === atBackup.length)).toBe(true);
        expect(counts.has(atBackup.length)).toBe(true);
      });

      it("refuses a backup whose checksum does not match (DataLoss) and changes nothing", async () => {
        await seedShop(20);
        const backup = await manager.create(target, "manual", { wait: true });
        await appQuery(`DELETE FROM customers WHERE id > 10`);
        const before = await appQuery(CUSTOMERS);
        const backupsBefore = (await manager.list(target.projectId)).length;

        const path = backupFilePath(backupDir, target.slug, backup.id);
        const bytes = await readFile(path);
        const tampered = Buffer.from(bytes);
        tampered[Math.floor(tampered.length / 2)]! ^= 0xff;
        await writeFile(path, tampered);

        await expect(manager.restore(target, backup.id)).rejects.toMatchObject({
          kind: "data_loss",
          message: expect.stringMatching(/checksum mismatch/),
        });
        expect(await appQuery(CUSTOMERS)).toEqual(before);
        // Refused before anything happened: not even a safety backup was taken.
        expect(await manager.list(target.projectId)).toHaveLength(backupsBefore);

        const verified = await manager.verify(target, backup.id);
        expect(verified).toMatchObject({ verification: "failed", verificationError: expect.stringMatching(/checksum mismatch/) });
        await writeFile(path, bytes);
      });
    });

    describe("verify", () => {
      it("records passed for a backup that loads, and leaves no scratch database", async () => {
        await seedShop(100);
        const backup = await manager.create(target, "manual", { wait: true });
        const verified = await manager.verify(target, backup.id);
        expect(verified).toMatchObject({ id: backup.id, verification: "passed", verificationError: null });
        expect(verified.verifiedAt).toBeInstanceOf(Date);
        expect((await manager.list(target.projectId)).find((r) => r.id === backup.id)?.verification).toBe("passed");
        expect(await scratchDatabases()).toEqual([]);
      });

      it("records failed, with the reason, for a backup that does not load; restoring it changes nothing", async () => {
        // A file whose checksum is right but whose SQL fails half way.
        const good = await manager.create(target, "manual", { wait: true });
        const broken = gzipSync("CREATE TABLE fine (x int);\nSELECT 1/0;\n");
        const id = newBackupId(new Date());
        await writeFile(backupFilePath(backupDir, target.slug, id), broken);
        await store.insertBackup({ ...good, id, sizeBytes: broken.length, sha256: createHash("sha256").update(broken).digest("hex") });
        const failuresBefore = (await metricValue(metrics, "sota_backup_failures_total", { kind: "verify" })) ?? 0;
        const verified = await manager.verify(target, id);
        expect(verified).toMatchObject({ verification: "failed", verificationError: expect.stringMatching(/division by zero/) });
        expect(await metricValue(metrics, "sota_backup_failures_total", { kind: "verify" })).toBe(failuresBefore + 1);
        expect(await scratchDatabases()).toEqual([]);
        const before = await appQuery(CUSTOMERS);
        await expect(manager.restore(target, id)).rejects.toMatchObject({ message: expect.stringMatching(/did not load.*database was not changed/) });
        expect(await appQuery(CUSTOMERS)).toEqual(before);
        expect(await scratchDatabases()).toEqual([]);
      });
    });

    describe("download", () => {
      let api: http.Server;
      let base: string;
      let backup: BackupRecord;
      let atBackup: Record<string, unknown>[];
      const otherProjectId = randomUUID();
      const tokens = {
        admin: `adm_${randomBytes(16).toString("hex")}`,
        project: `prj_${randomBytes(16).toString("hex")}`,
        other: `oth_${randomBytes(16).toString("hex")}`,
      };

      beforeAll(async () => {
        const registry = new TokenRegistry([
          { name: "ops", role: "admin", sha256: hashToken(tokens.admin) },
          { name: "customer", role: "project", projectId: target.projectId, sha256: hashToken(tokens.project) },
          { name: "other", role: "project", projectId: otherProjectId, sha256: hashToken(tokens.other) },
        ]);
        const route = backupDownloadRoute({
          tokens: registry,
          service: { downloadBackup: (projectId, backupId) => manager.download(projectId, backupId) },
          logger,
          metrics,
        });
        api = http.createServer((req, res) => {
          void route(req, res, new URL(req.url ?? "/", "http://localhost")).then((handled) => {
            if (!handled) res.writeHead(404).end();
          });
        });
        await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
        base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
        await seedShop(300);
        atBackup = await appQuery(CUSTOMERS);
        backup = await manager.create(target, "manual", { wait: true });
        await appQuery(`DELETE FROM customers WHERE id > 100`);
      });

      afterAll(async () => {
        await new Promise((resolve) => api?.close(resolve));
      });

      const url = (projectId: string, backupId: string): string => `${base}/v1/projects/${projectId}/database/backups/${backupId}/download`;

      it("streams the .sql.gz with its length and sha256, and gunzip | psql restores it into an empty database", async () => {
        const response = await get(url(target.projectId, backup.id), tokens.project);
        expect(response.status).toBe(200);
        expect(response.headers.get("content-type")).toBe("application/gzip");
        expect(Number(response.headers.get("content-length"))).toBe(backup.sizeBytes);
        expect(response.body.length).toBe(backup.sizeBytes);
        const sha256 = createHash("sha256").update(response.body).digest();
        expect(response.headers.get("x-checksum-sha256")).toBe(sha256.toString("hex"));
        expect(response.headers.get("x-checksum-sha256")).toBe(backup.sha256);
        expect(response.headers.get("digest")).toBe(`sha-256=${sha256.toString("base64")}`);
        expect(response.headers.get("content-disposition")).toBe(`attachment; filename="${target.slug}-${backup.id}.sql.gz"`);

        await runtime.adminQuery(target, `CREATE DATABASE "download-check"`);
        try {
          await gunzipIntoPsql(response.body, harness!.psqlCommand(target, "download-check"));
          const rows = await runtime.adminQuery(target, CUSTOMERS, "download-check");
          expect(rows.map((row) => ({ ...row, id: Number(row["id"]) }))).toEqual(atBackup);
        } finally {
          await runtime.adminQuery(target, `DROP DATABASE "download-check"`);
        }
      });

      it("answers HEAD with the headers only", async () => {
        const response = await get(url(target.projectId, backup.id), tokens.admin, "HEAD");
        expect(response.status).toBe(200);
        expect(response.headers.get("x-checksum-sha256")).toBe(backup.sha256);
        expect(response.body.length).toBe(0);
      });

      it("requires a token, and a project token only for its own project", async () => {
        const missing = await get(url(target.projectId, backup.id));
        expect(missing.status).toBe(401);
        expect(missing.headers.get("www-authenticate")).toBe("Bearer");
        expect(JSON.parse(missing.body.toString())).toMatchObject({ code: "unauthenticated" });
        expect((await get(url(target.projectId, backup.id), "not-a-token")).status).toBe(401);
        const foreign = await get(url(target.projectId, backup.id), tokens.other);
        expect(foreign.status).toBe(403);
        expect(JSON.parse(foreign.body.toString())).toMatchObject({ code: "permission_denied" });
      });

      it("answers 404 for unknown ids and for another project's backup id, whoever asks", async () => {
        const otherBackup = { ...backup, id: newBackupId(new Date()), projectId: otherProjectId };
        await store.insertBackup(otherBackup);
        for (const [projectId, backupId] of [
          [target.projectId, newBackupId(new Date())],
          [target.projectId, otherBackup.id],
          [otherProjectId, backup.id],
        ] as const) {
          const response = await get(url(projectId, backupId), tokens.admin);
          expect(response.status).toBe(404);
          expect(response.headers.get("content-type")).toBe("application/json");
          expect(JSON.parse(response.body.toString())).toMatchObject({ code: "not_found" });
        }
      });

      it("rejects ids that are not backup ids, path characters included, before touching a file", async () => {
        for (const id of ["..%2F..%2F..%2Fetc%2Fpasswd", "x.sql.gz", `${backup.id}%00`, `${backup.id}.sql.gz`]) {
          const response = await get(url(target.projectId, id), tokens.admin);
          expect(response.status).toBe(400);
          expect(JSON.parse(response.body.toString())).toMatchObject({ code: "invalid_argument" });
        }
        // "%2E%2E" is "..": the URL parser folds the segment away, so no route matches at all.
        expect((await get(url(target.projectId, "%2E%2E"), tokens.admin)).status).toBe(404);
      });

      it("answers 405 to other methods", async () => {
        expect((await get(url(target.projectId, backup.id), tokens.admin, "DELETE")).status).toBe(405);
      });
    });

    describe("logs", () => {
      it("name what happened and never hold the password", () => {
        const text = logLines.join("") + (harness?.logs?.() ?? "");
        expect(text).toContain("database restored from backup");
        expect(text).toContain("transactions still open after the grace period");
        expect(text).not.toContain(password);
      });
    });
  });
}

async function get(target: string, token?: string, method = "GET"): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const response = await fetch(target, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}

/** `gunzip -c | psql` as a user would run it, with the downloaded bytes on stdin. */
async function gunzipIntoPsql(gz: Buffer, psql: string[]): Promise<void> {
  const quoted = psql.map((arg) => `'${arg.replace(/'/g, "'\\''")}'`).join(" ");
  const child = spawn("sh", ["-c", `gunzip -c | ${quoted} >/dev/null`], {
    env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" },
    stdio: ["pipe", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(gz);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  if (code !== 0) throw new Error(`gunzip | psql failed (${code}): ${stderr}`);
}
