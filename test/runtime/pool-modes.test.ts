// The two pools of a project's PgBouncer, against real PostgreSQL and
// PgBouncer in both runtimes, tried as a new user would:
// - DATABASE_URL (transaction pool) never hands one client the session state
//   another left on the server connection (pg_dump's set_config search_path,
//   SET, temp tables, advisory locks, LISTEN, SQL PREPARE);
// - the session URL ({slug}_session, same pooler and credentials) carries what
//   transaction pooling breaks: pgbench -M prepared with 50 clients, an
//   advisory lock across statements, LISTEN/NOTIFY.
// The test process reaches the pooler only on 127.0.0.1 (the Docker driver
// publishes it there). Load is bounded (pgbench -t).
import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGzip } from "node:zlib";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DatabaseSpec, EnsureResult, Runtime } from "../../src/runtime/runtime.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine } from "../support/docker-test-bed.js";
import { processTestBed, removeDataDir } from "../support/process-runtime-harness.js";

const run = promisify(execFile);
const PGBENCH = process.env["SOTA_PGBENCH"] || "/usr/lib/postgresql/15/bin/pgbench";
const PSQL = process.env["SOTA_PSQL"] || "/usr/lib/postgresql/15/bin/psql";

interface PoolHarness {
  readonly runtime: Runtime;
  cleanup(): Promise<void>;
}

function describePoolModes(name: string, setup: () => Promise<PoolHarness>): void {
  describe(`PgBouncer's two pools: ${name}`, () => {
    let harness: PoolHarness | undefined;
    const spec: DatabaseSpec = { projectId: randomUUID(), slug: `pools-${randomBytes(3).toString("hex")}`, password: randomBytes(16).toString("hex") };
    let ensured: EnsureResult;
    let transactionUrl: string;
    let sessionUrl: string;

    beforeAll(async () => {
      harness = await setup();
      ensured = await harness.runtime.ensure(spec);
      const loopback = ensured.endpoint.loopback;
      if (!loopback) throw new Error("the runtime reported no loopback address for its pooler");
      const base = `postgresql://app_${spec.slug}:${spec.password}@${loopback.host}:${loopback.port}`;
      transactionUrl = `${base}/${spec.slug}?sslmode=disable`;
      sessionUrl = `${base}/${spec.slug}_session?sslmode=disable`;
      await withClient(transactionUrl, async (client) => {
        await client.query("CREATE TABLE leak_probe (id int)");
        await client.query("INSERT INTO leak_probe VALUES (1), (2)");
      });
    }, 180_000);

    afterAll(async () => {
      await harness?.cleanup();
    }, 120_000);

    it("DATABASE_URL: no client sees the session state another client left on the server connection", async () => {
      // One client leaves what a psql restore of a pg_dump leaves, and more, and stays connected.
      const first = await connect(transactionUrl);
      let firstPid: number;
      try {
        firstPid = await backendPid(first);
        await first.query("SELECT set_config('search_path', '', false)");
        await first.query("SET statement_timeout = '1234s'");
        await first.query("CREATE TEMP TABLE leftover (x int)");
        await first.query("PREPARE leftover_stmt AS SELECT 1");
        await first.query("SELECT pg_advisory_lock(4242)");
        await first.query("LISTEN leftover_channel");
        // The next client, while the first sits idle between transactions.
        await expectCleanSession(transactionUrl, firstPid);
      } finally {
        await first.end();
      }
      // And after it disconnected.
      await expectCleanSession(transactionUrl, firstPid);
    });

    it("DATABASE_URL: after `gunzip -c backup.sql.gz | psql \"$DATABASE_URL\"` the app's plain queries still find its tables", async () => {
      const dir = await mkdtemp(join(tmpdir(), "sota-pools-"));
      try {
        const file = join(dir, "backup.sql.gz");
        await pipeline(harness!.runtime.dump(spec), createGzip(), createWriteStream(file));
        // Into the same database: its CREATEs fail (the tables exist) and its
        // COPY adds the two rows again, but the dump's
        // set_config('search_path', '', false) runs as in any restore.
        await run("sh", ["-c", `gunzip -c "$FILE" | "$PSQL" -q "$URL" >/dev/null 2>&1`], {
          env: { ...process.env, FILE: file, PSQL, URL: transactionUrl },
          timeout: 60_000,
        });
        for (let i = 0; i < 3; i++) {
          await withClient(transactionUrl, async (client) => {
            expect((await client.query("SELECT count(*)::int AS n FROM leak_probe")).rows[0]).toEqual({ n: 4 });
          });
        }
        await withClient(transactionUrl, (client) => client.query("TRUNCATE leak_probe; INSERT INTO leak_probe VALUES (1), (2)"));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it("the session URL reaches the same database as the same role, in PgBouncer's session pool", async () => {
      await withClient(sessionUrl, async (client) => {
        const who = await client.query("SELECT current_user AS role, current_database() AS db, count(*)::int AS n FROM leak_probe");
        expect(who.rows[0]).toEqual({ role: `app_${spec.slug}`, db: spec.slug, n: 2 });
      });
      const databases = await harness!.runtime.poolerCommand(spec, "SHOW DATABASES");
      const session = databases.find((row) => row["name"] === `${spec.slug}_session`);
      expect(session).toMatchObject({ database: spec.slug, pool_mode: "session", pool_size: "5" });
      const transaction = databases.find((row) => row["name"] === spec.slug);
      expect(transaction?.["pool_mode"] ?? "").toMatch(/^(transaction|)$/);
    });

    it("the session URL keeps an advisory lock across statements, and LISTEN/NOTIFY works", async () => {
      const holder = await connect(sessionUrl);
      const listener = await connect(sessionUrl);
      try {
        await holder.query("SELECT pg_advisory_lock(777)");
        const pid = await backendPid(holder);
        const held = await holder.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 777 AND pid = $1 AND granted", [pid]);
        expect(held.rows[0]).toEqual({ n: 1 });
        await withClient(transactionUrl, async (other) => {
          expect((await other.query("SELECT pg_try_advisory_lock(777) AS got")).rows[0]).toEqual({ got: false });
        });
        await holder.query("SELECT pg_advisory_unlock(777)");

        await listener.query("LISTEN migrations_done");
        const received = new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("no notification within 10 s")), 10_000);
          listener.once("notification", (message) => {
            clearTimeout(timer);
            resolve(message.payload ?? "");
          });
        });
        await withClient(transactionUrl, (other) => other.query("SELECT pg_notify('migrations_done', 'v42')"));
        expect(await received).toBe("v42");
      } finally {
        await holder.end();
        await listener.end();
      }
      // The session pool resets a server connection when its client leaves.
      await withClient(sessionUrl, async (client) => {
        await client.query("SELECT set_config('search_path', '', false)");
      });
      await withClient(sessionUrl, async (client) => {
        expect((await client.query("SHOW search_path")).rows[0]).toEqual({ search_path: '"$user", public' });
      });
    });

    it("pgbench -M prepared with 50 clients passes through the session URL, and through DATABASE_URL only where PgBouncer tracks prepared statements", async () => {
      await run(PGBENCH, ["-i", "-q", "-s", "1", sessionUrl], { timeout: 120_000 });
      // -j 50: a thread per client, so each client disconnects when its own
      // transactions are done. pgbench closes a thread's connections only when
      // all its clients are done, and a session pool of 5 gives a server
      // connection to 5 clients at a time: with fewer threads the clients that
      // are done would keep theirs while the rest wait (query_wait_timeout).
      const bench = (url: string) => run(PGBENCH, ["-n", "-M", "prepared", "-c", "50", "-j", "50", "-t", "4", url], { timeout: 180_000 });

      const session = await bench(sessionUrl);
      expect(session.stdout).toMatch(/number of transactions actually processed: 200\/200/);

      const transaction = await bench(transactionUrl).then(
        (result) => ({ ok: true, output: result.stdout + result.stderr }),
        (error: { stdout?: string; stderr?: string }) => ({ ok: false, output: `${error.stdout ?? ""}${error.stderr ?? ""}` }),
      );
      if (ensured.pooler.preparedStatementsSupported) {
        expect(transaction.output).toMatch(/number of transactions actually processed: 200\/200/);
      } else {
        // PgBouncer < 1.22 passes named statements to whichever server
        // connection the transaction gets: one already holds that name, or
        // (after the reset) none does.
        expect(transaction.ok).toBe(false);
        expect(transaction.output).toMatch(/prepared statement "[^"]+" (already exists|does not exist)/);
      }
    }, 400_000);
  });
}

/** A second client, sequentially on the same server connection, sees none of the first's state. */
async function expectCleanSession(url: string, firstPid: number): Promise<void> {
  await withClient(url, async (client) => {
    // Reuse is what makes the test mean something: one client at a time, so
    // PgBouncer hands out the server connection it just took back.
    expect(await backendPid(client)).toBe(firstPid);
    expect((await client.query("SELECT count(*)::int AS n FROM leak_probe")).rows[0]).toEqual({ n: 2 });
    expect((await client.query("SHOW search_path")).rows[0]).toEqual({ search_path: '"$user", public' });
    expect((await client.query("SHOW statement_timeout")).rows[0]).toEqual({ statement_timeout: "0" });
    expect((await client.query("SELECT to_regclass('pg_temp.leftover') IS NULL AS gone")).rows[0]).toEqual({ gone: true });
    expect((await client.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE from_sql")).rows[0]).toEqual({ n: 0 });
    expect((await client.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).rows[0]).toEqual({ n: 0 });
    expect((await client.query("SELECT count(*)::int AS n FROM pg_listening_channels()")).rows[0]).toEqual({ n: 0 });
  });
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(url);
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function backendPid(client: pg.Client): Promise<number> {
  return (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid;
}

describePoolModes("process", async () => {
  const bed = await processTestBed(65);
  const runtime = await bed.open();
  return {
    runtime,
    cleanup: async () => {
      await runtime.close();
      await removeDataDir(bed.dataDir);
    },
  };
});

const engine = await probeDockerEngine();
if (!engine.reachable && process.env["SOTA_REQUIRE_DOCKER"] !== "1") {
  console.warn(`PgBouncer pool tests on Docker skipped: ${engine.reason} (set SOTA_REQUIRE_DOCKER=1 to fail instead)`);
} else {
  describePoolModes("docker", async () => {
    await ensureTestImages();
    const bed = new DockerTestBed();
    const runtime = bed.runtime({ publishHost: "127.0.0.1" });
    return {
      runtime,
      cleanup: async () => {
        await runtime.close();
        await bed.cleanup();
      },
    };
  });
}
