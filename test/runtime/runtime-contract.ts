// The behaviour every Runtime driver must show, run against each driver by its
// own test file:
//
//   describeRuntimeContract("process", async () => ({ runtime, reopen, cleanup, logs }));
//
// The tests run in order and share state (one runtime, two projects), because
// each new database costs real seconds. They only use the Runtime interface and
// reach databases through `endpoint.loopback` with a real `pg` client, so a
// driver that publishes no loopback port cannot pass (the Docker driver's test
// configures publishing on 127.0.0.1).
import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeError, type DatabaseSpec, type EnsureResult, type Runtime } from "../../src/runtime/runtime.js";

export interface RuntimeHarness {
  /** A fresh runtime on empty state. */
  readonly runtime: Runtime;
  /**
   * Closes the current runtime and opens a new one on the same state (data
   * dir or engine, and the same port registry), as a restart of the service does.
   */
  reopen(): Promise<Runtime>;
  /** Closes the current runtime and removes everything the suite created. */
  cleanup(): Promise<void>;
  /** Everything the driver logged so far, when the harness captures it. */
  logs?(): string;
}

export function describeRuntimeContract(name: string, setup: () => Promise<RuntimeHarness>): void {
  describe(`Runtime contract: ${name}`, () => {
    let harness: RuntimeHarness | undefined;
    let runtime: Runtime;
    const suffix = randomBytes(3).toString("hex");
    let a = newSpec(`contract-a-${suffix}`);
    const b = newSpec(`contract-b-${suffix}`);
    const passwordsUsed = [a.password, b.password];
    let first: EnsureResult;

    beforeAll(async () => {
      harness = await setup();
      runtime = harness.runtime;
    });

    afterAll(async () => {
      await harness?.cleanup();
    });

    it("checks the spec itself: a bad slug, project id or password is refused and nothing is made", async () => {
      const bad: DatabaseSpec[] = [
        { ...a, slug: "Bad_Slug" },
        { ...a, slug: "../escape" },
        { ...a, slug: "" },
        { ...a, projectId: "not-a-uuid" },
        { ...a, password: "" },
        { ...a, password: "has space" },
        { ...a, password: "x".repeat(1025) },
        { ...a, password: "caf\u00e9" },
      ];
      for (const spec of bad) {
        const error = await runtime.ensure(spec).catch((reason: unknown) => reason);
        expect(error, JSON.stringify(spec.slug)).toBeInstanceOf(RuntimeError);
        expect((error as RuntimeError).reason).toBe("failed");
        expect((error as RuntimeError).message).not.toContain(spec.password || "\u0000");
      }
      for (const target of bad.filter((spec) => spec.password === a.password)) {
        await expect(runtime.status(target)).rejects.toMatchObject({ name: "RuntimeError", reason: "failed" });
        await expect(runtime.remove(target, { keepData: false })).rejects.toMatchObject({ name: "RuntimeError", reason: "failed" });
        await expect(runtime.adminQuery(target, "SELECT 1")).rejects.toMatchObject({ name: "RuntimeError", reason: "failed" });
        await expect(collect(runtime.dump(target))).rejects.toMatchObject({ name: "RuntimeError", reason: "failed" });
      }
      expect((await runtime.status(a)).state).toBe("missing");
    });

    it("ensure provisions a database that the app role uses through the pooler", async () => {
      first = await runtime.ensure(a);
      expect(first.endpoint.loopback).toBeDefined();
      expect(first.postgresVersion).toMatch(/^\d+(\.\d+)?/);
      expect(first.pooler.version).toMatch(/^\d+\.\d+/);
      await withApp(first, a, async (client) => {
        const who = await client.query("SELECT current_user AS role, current_database() AS db");
        expect(who.rows[0]).toEqual({ role: `app_${a.slug}`, db: a.slug });
        await client.query("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)");
        await client.query("INSERT INTO notes (body) VALUES ($1), ($2), ($3)", ["one", "two", "it's three"]);
        expect(await countNotes(client)).toBe(3);
      });
    });

    it("ensure again returns the same endpoint and keeps data and password", async () => {
      const again = await runtime.ensure(a);
      expect(again.endpoint).toEqual(first.endpoint);
      expect(again.postgresVersion).toBe(first.postgresVersion);
      await withApp(again, a, async (client) => expect(await countNotes(client)).toBe(3));
    });

    it("status reports the database running at its endpoint", async () => {
      const status = await runtime.status(a);
      expect(status.state).toBe("running");
      expect(status.endpoint?.port).toBe(first.endpoint.port);
    });

    it("refuses a wrong password", async () => {
      await expect(withApp(first, { ...a, password: randomBytes(16).toString("hex") }, async () => undefined)).rejects.toThrow();
    });

    it("concurrent ensures of one new project make one database, both succeed", async () => {
      const [one, two] = await Promise.all([runtime.ensure(b), runtime.ensure(b)]);
      expect(one.endpoint).toEqual(two.endpoint);
      expect(one.endpoint.loopback?.port).not.toBe(first.endpoint.loopback?.port);
      const rows = await runtime.adminQuery(b, `SELECT count(*)::text AS n FROM pg_database WHERE datname = '${b.slug}'`);
      expect(rows).toEqual([{ n: "1" }]);
      await withApp(one, b, async (client) => {
        await client.query("CREATE TABLE kept (v text)");
        await client.query("INSERT INTO kept VALUES ('still here')");
      });
    });

    it("runs the product spec's pool settings, read back from the pooler's console", async () => {
      const config = new Map((await runtime.poolerCommand(a, "SHOW CONFIG")).map((row) => [row["key"], row["value"]]));
      expect(config.get("pool_mode")).toBe("transaction");
      expect(config.get("default_pool_size")).toBe("20");
      expect(config.get("max_client_conn")).toBe("100");
      expect(first.pooler).toMatchObject({ poolMode: "transaction", defaultPoolSize: 20, maxClientConn: 100 });

      const version = (await runtime.poolerCommand(a, "SHOW VERSION"))[0]?.["version"] ?? "";
      expect(version).toContain(first.pooler.version);
      // sota-db turns prepared statement tracking on from 1.22 (see supportsPreparedStatements).
      const supported = versionAtLeast(first.pooler.version, [1, 22]);
      expect(first.pooler.preparedStatementsSupported).toBe(supported);
      if (supported) {
        expect(Number(config.get("max_prepared_statements"))).toBeGreaterThan(0);
        expect(first.pooler.maxPreparedStatements).toBe(Number(config.get("max_prepared_statements")));
        // Named (protocol-level) prepared statements across transactions: what
        // max_prepared_statements makes work in transaction mode.
        await withApp(first, a, async (client) => {
          for (let i = 0; i < 3; i++) {
            const result = await client.query({ name: "contract-stmt", text: "SELECT $1::int AS v", values: [i] });
            expect(result.rows[0]).toEqual({ v: i });
          }
        });
      } else {
        expect(first.pooler.maxPreparedStatements).toBe(0);
      }
    });

    it("gives the app role no privileges beyond owning its database", async () => {
      const role = `app_${a.slug}`;
      const roles = await runtime.adminQuery(
        a,
        `SELECT rolsuper::text AS super, rolcreatedb::text AS createdb, rolcreaterole::text AS createrole
           FROM pg_roles WHERE rolname = '${role}'`,
      );
      expect(roles).toEqual([{ super: "false", createdb: "false", createrole: "false" }]);
      const owner = await runtime.adminQuery(a, `SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = '${a.slug}'`);
      expect(owner).toEqual([{ owner: role }]);
      await withApp(first, a, async (client) => {
        await expect(client.query(`CREATE DATABASE "other-${suffix}"`)).rejects.toThrow(/permission denied/);
      });
    });

    it("ensure with a new password leaves exactly that password working", async () => {
      const old = a;
      a = { ...a, password: randomBytes(16).toString("hex") };
      passwordsUsed.push(a.password);
      const changed = await runtime.ensure(a);
      expect(changed.endpoint).toEqual(first.endpoint);
      await withApp(changed, a, async (client) => expect(await countNotes(client)).toBe(3));
      await expect(withApp(changed, old, async () => undefined)).rejects.toThrow();
    });

    it("dumps plain SQL that restores into a scratch database", async () => {
      const sql = await collect(runtime.dump(a));
      expect(sql).toContain("CREATE TABLE public.notes");
      expect(sql).toContain("it's three");
      const scratch = `scratch_${suffix}`;
      // Loads run as the app role, into databases it owns (as the backup code creates them).
      await runtime.adminQuery(a, `CREATE DATABASE "${scratch}" OWNER "app_${a.slug}"`);
      try {
        await runtime.restore(a, Readable.from([sql]), scratch);
        const rows = await runtime.appQuery(a, "SELECT string_agg(body, ',' ORDER BY id) AS bodies FROM public.notes", scratch);
        expect(rows).toEqual([{ bodies: "one,two,it's three" }]);
      } finally {
        await runtime.adminQuery(a, `DROP DATABASE IF EXISTS "${scratch}"`);
      }
    });

    it("restore stops at the first error and fails", async () => {
      const scratch = `scratch_err_${suffix}`;
      await runtime.adminQuery(a, `CREATE DATABASE "${scratch}" OWNER "app_${a.slug}"`);
      try {
        const sql = "CREATE TABLE before_error (x int);\nTHIS IS NOT SQL;\nCREATE TABLE after_error (x int);\n";
        await expect(runtime.restore(a, Readable.from([sql]), scratch)).rejects.toBeInstanceOf(RuntimeError);
        const rows = await runtime.adminQuery(a, "SELECT count(*)::text AS n FROM pg_class WHERE relname = 'after_error'", scratch);
        expect(rows).toEqual([{ n: "0" }]);
      } finally {
        await runtime.adminQuery(a, `DROP DATABASE IF EXISTS "${scratch}"`);
      }
    });

    it("loads as the app role, never the superuser; the superuser's search_path is pinned", async () => {
      const sql = "CREATE TABLE public.loaded_by AS SELECT session_user::text AS who, current_user::text AS acting;\n";
      await runtime.restore(a, Readable.from([sql]), a.slug);
      try {
        const rows = await runtime.appQuery(a, "SELECT who, acting, session_user::text AS checker FROM public.loaded_by");
        expect(rows).toEqual([{ who: `app_${a.slug}`, acting: `app_${a.slug}`, checker: `app_${a.slug}` }]);
        await runtime.appQuery(a, `ALTER DATABASE "${a.slug}" SET search_path = public, pg_catalog`);
        const [pinned] = await runtime.adminQuery(a, "SELECT current_setting('search_path') AS path", a.slug);
        expect(pinned?.["path"]).toMatch(/^pg_catalog, ?pg_temp$/);
      } finally {
        await runtime.appQuery(a, `DROP TABLE public.loaded_by; ALTER DATABASE "${a.slug}" RESET search_path`);
      }
    });

    it("a failing pg_dump makes the stream error, with no secret in the message", async () => {
      await runtime.adminQuery(a, `ALTER DATABASE "${a.slug}" WITH ALLOW_CONNECTIONS false`);
      try {
        const error = await collect(runtime.dump(a)).then(
          () => undefined,
          (reason: unknown) => reason,
        );
        expect(error).toBeInstanceOf(Error);
        const message = String((error as Error).message);
        for (const password of passwordsUsed) expect(message).not.toContain(password);
        expect(message).not.toContain("SCRAM-SHA-256$");
      } finally {
        await runtime.adminQuery(a, `ALTER DATABASE "${a.slug}" WITH ALLOW_CONNECTIONS true`);
      }
      await expect(collect(runtime.dump(newSpec(`contract-none-${suffix}`)))).rejects.toThrow();
    });

    it("after a restart of the service, ensure brings the database back with its data and endpoint", async () => {
      if (!harness) throw new Error("no harness");
      runtime = await harness.reopen();
      const back = await runtime.ensure(a);
      expect(back.endpoint).toEqual(first.endpoint);
      await withApp(back, a, async (client) => expect(await countNotes(client)).toBe(3));
    });

    it("remove with keepData stops the database and a later ensure brings its data back", async () => {
      await runtime.ensure(b);
      await runtime.remove(b, { keepData: true });
      expect((await runtime.status(b)).state).not.toBe("running");
      const back = await runtime.ensure(b);
      await withApp(back, b, async (client) => {
        expect((await client.query("SELECT v FROM kept")).rows).toEqual([{ v: "still here" }]);
      });
    });

    it("remove deletes the database and frees its endpoint", async () => {
      const ensured = await runtime.ensure(b);
      await runtime.remove(b, { keepData: false });
      expect((await runtime.status(b)).state).toBe("missing");
      await expect(withApp(ensured, b, async () => undefined)).rejects.toThrow();
      const fresh = await runtime.ensure(b);
      await withApp(fresh, b, async (client) => {
        const rows = await client.query("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'kept'");
        expect(rows.rows).toEqual([{ n: 0 }]);
      });
      await runtime.remove(b, { keepData: false });
    });

    it("after close(), every call fails as unavailable, and closing again is harmless", async () => {
      await runtime.close();
      const unavailable = { name: "RuntimeError", reason: "unavailable", message: expect.stringMatching(/runtime has been closed/) };
      await expect(runtime.ensure(a)).rejects.toMatchObject(unavailable);
      await expect(runtime.status(a)).rejects.toMatchObject(unavailable);
      await expect(collect(runtime.dump(a))).rejects.toMatchObject(unavailable);
      await expect(runtime.restore(a, Readable.from(["SELECT 1;\n"]))).rejects.toMatchObject(unavailable);
      await expect(runtime.adminQuery(a, "SELECT 1")).rejects.toMatchObject(unavailable);
      await expect(runtime.appQuery(a, "SELECT 1")).rejects.toMatchObject(unavailable);
      await expect(runtime.poolerCommand(a, "SHOW VERSION")).rejects.toMatchObject(unavailable);
      await expect(runtime.remove(a, { keepData: true })).rejects.toMatchObject(unavailable);
      await expect(runtime.ping()).rejects.toMatchObject(unavailable);
      await runtime.close();
    });

    it("never logs a password or a SCRAM verifier", (context) => {
      const logs = harness?.logs?.() ?? "";
      if (logs.length === 0) context.skip();
      for (const password of passwordsUsed) expect(logs).not.toContain(password);
      expect(logs).not.toContain("SCRAM-SHA-256$");
    });
  });
}

function newSpec(slug: string): DatabaseSpec {
  return { projectId: randomUUID(), slug, password: randomBytes(16).toString("hex") };
}

/** Connects as the app role through the pooler's loopback address, runs `work`, disconnects. */
export async function withApp<T>(result: EnsureResult, spec: DatabaseSpec, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const loopback = result.endpoint.loopback;
  if (!loopback) throw new Error("the runtime reported no loopback address for its pooler");
  const client = new pg.Client({
    host: loopback.host,
    port: loopback.port,
    user: `app_${spec.slug}`,
    password: spec.password,
    database: spec.slug,
    connectionTimeoutMillis: 10_000,
  });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function countNotes(client: pg.Client): Promise<number> {
  const result = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM notes");
  return result.rows[0]?.n ?? -1;
}

async function collect(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString("utf8");
}

function versionAtLeast(version: string, minimum: readonly number[]): boolean {
  const parts = version.split(".").map(Number);
  for (let i = 0; i < minimum.length; i++) {
    const have = parts[i] ?? 0;
    const want = minimum[i] ?? 0;
    if (have !== want) return have > want;
  }
  return true;
}
