// Tenant SQL never runs with more privilege than the tenant's own role.
//
// The attack (issue 9, item 1): holding only a DATABASE_URL, a tenant plants
// SQL that PostgreSQL runs while a dump of its database loads, then asks for
// a backup to be verified or restored. Loaded as the superuser, that SQL ran
// as the superuser: `COPY ... TO PROGRAM` gave a shell as the OS user that
// owns every cluster's socket. Here each shape calls public.leak(shape),
// which tries two things only a superuser may (run a program that creates a
// file, create a role) and swallows the refusal, so the load goes on either
// way. The traces are looked for afterwards with the service's own superuser
// (pg_stat_file and pg_roles answer the same in both runtimes).
//
// Also: the service's superuser sessions ignore the tenant's
// `ALTER DATABASE ... SET search_path` (a public.count(*) aggregate planted
// to shadow pg_catalog's), and backups taken the old way (a superuser
// pg_dump) still verify and restore, same data, same URL.
import { spawn } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBackupManager, type BackupManager } from "../../src/backup/index.js";
import { backupFilePath } from "../../src/backup/backup-paths.js";
import { createLogger } from "../../src/log.js";
import { Metrics } from "../../src/metrics.js";
import { newBackupId } from "../../src/names.js";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";
import type { Runtime, RuntimeTarget } from "../../src/runtime/runtime.js";
import { SqliteStore } from "../../src/store/sqlite-store.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine , describeWithDocker } from "../support/docker-test-bed.js";
import { processTestBed, removeDataDir } from "../support/process-runtime-harness.js";

interface Harness {
  readonly runtime: Runtime;
  /** argv of pg_dump as the superuser, the way backups were taken before the fix. */
  superuserDump(target: RuntimeTarget): string[];
  cleanup(): Promise<void>;
}

/** Each shape makes PostgreSQL call public.leak('<shape>') while the dump loads. */
const SHAPES = ["check", "domain", "generated", "index", "operator", "cast", "matview", "trigger", "aggregate"] as const;

function plantedSql(marker: string): string[] {
  const leak = `
    CREATE FUNCTION public.leak(shape text) RETURNS boolean LANGUAGE plpgsql AS $f$
    BEGIN
      BEGIN
        EXECUTE pg_catalog.format('COPY (SELECT 1) TO PROGRAM %L', '/usr/bin/touch /tmp/${marker}-' || shape);
      EXCEPTION WHEN OTHERS THEN NULL;
      END;
      BEGIN
        EXECUTE pg_catalog.format('CREATE ROLE %I', '${marker}_' || shape);
      EXCEPTION WHEN OTHERS THEN NULL;
      END;
      RETURN true;
    END $f$`;
  return [
    leak,
    `CREATE FUNCTION public.leak_int(shape text, x int) RETURNS int LANGUAGE sql IMMUTABLE AS $f$ SELECT CASE WHEN public.leak(shape) THEN x END $f$`,
    // 1. A CHECK constraint: checked for every row COPY loads.
    `CREATE TABLE public.t_check (x int CHECK (public.leak('check')))`,
    `INSERT INTO public.t_check VALUES (1), (2)`,
    // 2. A domain's CHECK: checked for every value COPY loads into the column.
    `CREATE DOMAIN public.d_leak AS int CHECK (public.leak('domain'))`,
    `CREATE TABLE public.t_domain (x public.d_leak)`,
    `INSERT INTO public.t_domain VALUES (1)`,
    // 3. A stored generated column: computed by COPY, not dumped.
    `CREATE TABLE public.t_generated (x int, g int GENERATED ALWAYS AS (public.leak_int('generated', x)) STORED)`,
    `INSERT INTO public.t_generated (x) VALUES (1)`,
    // 4. An index expression: evaluated for every row when the index is built after the data.
    `CREATE TABLE public.t_index (x int)`,
    `INSERT INTO public.t_index VALUES (1)`,
    `CREATE INDEX t_index_leak ON public.t_index ((public.leak_int('index', x)))`,
    // 5. An operator of the tenant's, used by a CHECK constraint.
    `CREATE FUNCTION public.op_leak(int, int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT public.leak('operator') $f$`,
    `CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.op_leak)`,
    `CREATE TABLE public.t_operator (x int CHECK (x OPERATOR(public.===) x))`,
    `INSERT INTO public.t_operator VALUES (1)`,
    // 6. A cast of the tenant's (between its own types), used by a CHECK constraint.
    `CREATE TYPE public.wrapped AS (v int)`,
    `CREATE FUNCTION public.cast_leak(public.wrapped) RETURNS boolean LANGUAGE sql IMMUTABLE AS $f$ SELECT public.leak('cast') $f$`,
    `CREATE CAST (public.wrapped AS boolean) WITH FUNCTION public.cast_leak(public.wrapped)`,
    `CREATE TABLE public.t_cast (w public.wrapped CHECK (w::boolean))`,
    `INSERT INTO public.t_cast VALUES (ROW(1))`,
    // 7. A materialized view: REFRESHed by the dump once the data is in.
    `CREATE MATERIALIZED VIEW public.mv_leak AS SELECT public.leak('matview') AS fired`,
    // 8. A trigger on a table the load writes to (pg_dump creates triggers after the data; any order must be safe).
    `CREATE FUNCTION public.trigger_leak() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.leak('trigger'); RETURN NEW; END $f$`,
    `CREATE TABLE public.t_trigger (x int)`,
    `CREATE TRIGGER t_trigger_leak BEFORE INSERT ON public.t_trigger FOR EACH ROW EXECUTE FUNCTION public.trigger_leak()`,
    `INSERT INTO public.t_trigger VALUES (1)`,
    // 9. search_path: an aggregate shadowing pg_catalog.count(*) for every session
    // in this database (and, copied with the database's settings, its scratch copies).
    `CREATE FUNCTION public.count_step(bigint) RETURNS bigint LANGUAGE plpgsql AS $f$ BEGIN PERFORM public.leak('aggregate'); RETURN $1 + 1; END $f$`,
    `CREATE AGGREGATE public.count(*) (SFUNC = public.count_step, STYPE = bigint, INITCOND = '0')`,
    // The tenant's legitimate data, with what an app role may own that a dump
    // replays: a trusted extension, grants, row security, comments, a large object.
    `CREATE TABLE public.orders (id int PRIMARY KEY, item text NOT NULL)`,
    `INSERT INTO public.orders SELECT i, 'item ' || i FROM generate_series(1, 50) AS i`,
    `CREATE EXTENSION IF NOT EXISTS pgcrypto`,
    `COMMENT ON EXTENSION pgcrypto IS 'hashes for the orders'`,
    `COMMENT ON SCHEMA public IS 'the shop'`,
    `GRANT SELECT ON public.orders TO PUBLIC`,
    `CREATE TABLE public.secured (owner_name text, note text)`,
    `INSERT INTO public.secured VALUES ('a', 'one'), ('b', 'two')`,
    `ALTER TABLE public.secured ENABLE ROW LEVEL SECURITY`,
    `CREATE POLICY mine ON public.secured USING (owner_name = current_user)`,
    `ALTER TABLE public.secured FORCE ROW LEVEL SECURITY`,
    `SELECT pg_catalog.lo_from_bytea(0, 'large object')`,
  ];
}

function describeTenantSql(name: string, setup: () => Promise<Harness>): void {
  describe(`tenant SQL during backup loads: ${name}`, () => {
    let harness: Harness | undefined;
    let runtime: Runtime;
    let manager: BackupManager;
    let store: SqliteStore;
    let workDir: string;
    let backupDir: string;
    let pooler: { host: string; port: number };
    const target = { projectId: randomUUID(), slug: `victim-${randomBytes(3).toString("hex")}` };
    const password = randomBytes(16).toString("hex");
    const marker = `sotaleak${randomBytes(4).toString("hex")}`;

    beforeAll(async () => {
      harness = await setup();
      runtime = harness.runtime;
      const ensured = await runtime.ensure({ ...target, password });
      if (!ensured.endpoint.loopback) throw new Error("this test needs a loopback endpoint to reach the pooler");
      pooler = ensured.endpoint.loopback;
      workDir = await mkdtemp(join(tmpdir(), "sota-tenant-sql-"));
      backupDir = join(workDir, "backups");
      store = new SqliteStore(join(workDir, "state.db"));
      const logger = createLogger({ level: "silent" });
      manager = await createBackupManager({
        store,
        runtime,
        metrics: new Metrics({ defaultMetrics: false }),
        logger,
        dir: backupDir,
        retentionDays: 7,
        pauseGraceMs: 1_000,
      });
      for (const statement of plantedSql(marker)) await appQuery(statement);
      // Every session in the tenant's database now finds public.count(*) before pg_catalog's.
      await appQuery(`ALTER DATABASE "${target.slug}" SET search_path = public, pg_catalog`);
      await appQuery(`ALTER ROLE "app_${target.slug}" SET search_path = public, pg_catalog`);
    }, 300_000);

    afterAll(async () => {
      await manager?.close();
      await store?.close();
      if (runtime) {
        const roles = await runtime.adminQuery(target, `SELECT rolname FROM pg_roles WHERE rolname LIKE '${marker}%'`).catch(() => []);
        for (const row of roles) await runtime.adminQuery(target, `DROP ROLE "${row["rolname"]}"`).catch(() => undefined);
      }
      await harness?.cleanup();
      if (workDir) await rm(workDir, { recursive: true, force: true });
      await Promise.all(SHAPES.map((shape) => rm(`/tmp/${marker}-${shape}`, { force: true })));
    }, 120_000);

    async function appQuery(sql: string): Promise<Record<string, unknown>[]> {
      const client = new pg.Client({ host: pooler.host, port: pooler.port, user: `app_${target.slug}`, password, database: target.slug });
      client.on("error", () => undefined);
      await client.connect();
      try {
        return (await client.query(sql)).rows;
      } finally {
        await client.end();
      }
    }

    /** The shapes whose code ran as the superuser: a file its program created, or a role it created. */
    async function superuserTraces(): Promise<string[]> {
      const found: string[] = [];
      for (const shape of SHAPES) {
        const [file] = await runtime.adminQuery(target, `SELECT ((pg_catalog.pg_stat_file('/tmp/${marker}-${shape}', true)).size IS NOT NULL)::text AS present`);
        if (file?.["present"] === "true") found.push(`${shape}: program run`);
      }
      const roles = await runtime.adminQuery(target, `SELECT rolname FROM pg_catalog.pg_roles WHERE rolname LIKE '${marker}%'`);
      for (const row of roles) found.push(`${String(row["rolname"]).slice(marker.length + 1)}: role created`);
      return found.sort();
    }

    const ORDERS = "SELECT id, item FROM public.orders ORDER BY id";
    const LEGIT = `SELECT (SELECT pg_catalog.count(*) FROM public.secured) AS secured,
                          (SELECT pg_catalog.count(*) FROM pg_catalog.pg_largeobject_metadata) AS objects,
                          pg_catalog.obj_description(e.oid, 'pg_extension') AS comment
                     FROM pg_catalog.pg_extension e WHERE e.extname = 'pgcrypto'`;

    it("planting the shapes as the app role leaves no trace (the app role cannot do either)", async () => {
      expect(await superuserTraces()).toEqual([]);
      expect(await appQuery("SELECT count(*)::int AS n FROM public.orders")).toEqual([{ n: 50 }]);
    });

    it("VerifyBackup passes and runs none of it as the superuser", async () => {
      const backup = await manager.create(target, "manual", { wait: true });
      expect(backup).toMatchObject({ state: "succeeded", error: null });
      const verified = await manager.verify(target, backup.id);
      expect(await superuserTraces()).toEqual([]);
      expect(verified).toMatchObject({ verification: "passed", verificationError: null });
    });

    it("RestoreBackup brings the tenant's data back and runs none of it as the superuser", async () => {
      const atBackup = await appQuery(ORDERS);
      const backup = await manager.create(target, "manual", { wait: true });
      await appQuery("DELETE FROM public.orders WHERE id > 10");
      await manager.restore(target, backup.id);
      expect(await superuserTraces()).toEqual([]);
      expect(await appQuery(ORDERS)).toEqual(atBackup);
      expect(await appQuery("SELECT x FROM public.t_check ORDER BY x")).toEqual([{ x: 1 }, { x: 2 }]);
      expect(await appQuery("SELECT fired FROM public.mv_leak")).toEqual([{ fired: true }]);
      // Read past the policies (which hide every row from the app role itself): all rows came back.
      expect(await runtime.adminQuery(target, LEGIT, target.slug)).toEqual([{ secured: "2", objects: "1", comment: "hashes for the orders" }]);
    });

    it("a backup taken the old way (pg_dump as the superuser) still verifies and restores, same data, same URL", async () => {
      const atBackup = await appQuery(ORDERS);
      const dump = gzipSync(await run(harness!.superuserDump(target)));
      const template = await manager.create(target, "manual", { wait: true });
      const id = newBackupId(new Date());
      await writeFile(backupFilePath(backupDir, target.slug, id), dump);
      await store.insertBackup({ ...template, id, sizeBytes: dump.length, sha256: createHash("sha256").update(dump).digest("hex") });

      expect(await manager.verify(target, id)).toMatchObject({ verification: "passed", verificationError: null });
      await appQuery("DELETE FROM public.orders WHERE id > 20");
      await manager.restore(target, id);
      // The same DATABASE_URL (pooler, role, password) reaches the restored data.
      expect(await appQuery(ORDERS)).toEqual(atBackup);
      expect(await appQuery("SELECT current_user AS who")).toEqual([{ who: `app_${target.slug}` }]);
      expect(await superuserTraces()).toEqual([]);
    });

    it("the service's superuser queries ignore the tenant's search_path", async () => {
      // Where the service runs them (the maintenance database), and even in the tenant's own database.
      for (const database of ["postgres", target.slug]) {
        const [row] = await runtime.adminQuery(target, "SELECT pg_catalog.current_setting('search_path') AS path", database);
        expect(row?.["path"]).toMatch(/^pg_catalog, ?pg_temp$/);
      }
      expect(await superuserTraces()).toEqual([]);
    });
  });
}

/** Runs argv and returns its stdout; fails with its stderr. */
function run(argv: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${argv[0]} exited ${code}: ${err}`))));
  });
}

describeTenantSql("process", async () => {
  const bed = await processTestBed(20);
  const runtime = await bed.open();
  return {
    runtime,
    superuserDump: (target) => [
      runtime.binaries.postgres.pgDump,
      ...["--no-password", "-h", instancePaths(bed.dataDir, target.slug).socketDir, "-U", "postgres", "-d", target.slug],
    ],
    cleanup: async () => {
      await runtime.close();
      await removeDataDir(bed.dataDir);
    },
  };
});

const engine = await probeDockerEngine();
describeWithDocker("tenant SQL during backup loads: docker", engine, () => {
  describeTenantSql("docker", async () => {
    await ensureTestImages();
    const bed = new DockerTestBed();
    const runtime = bed.runtime({ publishHost: "127.0.0.1" });
    return {
      runtime,
      superuserDump: (target) => [
        ...["docker", "exec", "--user", "postgres", `sota-db-${target.slug}`],
        ...["pg_dump", "--no-password", "-U", "postgres", "-d", target.slug],
      ],
      cleanup: async () => {
        await runtime.close();
        await bed.cleanup();
      },
    };
  });
});
