// The process driver's spare copies against real PostgreSQL and PgBouncer: a
// new database's data directory is a spare renamed into place, spares are
// refilled in the background and never started, and a restart keeps the
// complete ones and removes everything else.
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { appQuery, newSpec, processesUnder, readyLine, withApp } from "./process-helpers.js";

const FILL_TIMEOUT_MS = 90_000;

describe("process runtime: spare copies", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  const spec = newSpec("spare-main");
  let firstSpares: string[];

  beforeAll(async () => {
    bed = await processTestBed(9);
    runtime = await bed.open({ spareCopies: 1 });
    await runtime.spareCopies.whenFull(AbortSignal.timeout(FILL_TIMEOUT_MS));
  });

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  const sparesDir = () => join(bed.dataDir, "spares");
  const spareEntries = async () => (await readdir(sparesDir())).sort();

  it("keeps the configured number of complete copies of the template on disk, none of them started", async () => {
    expect(runtime.spareCopies.size).toBe(1);
    expect(runtime.spareCopies.ready).toBe(1);
    firstSpares = await spareEntries();
    expect(firstSpares).toEqual([expect.stringMatching(/^s-[0-9a-f]{12}$/)]);
    const major = String(runtime.binaries.postgres.major);
    expect((await readFile(join(sparesDir(), firstSpares[0]!, "pgdata", "PG_VERSION"), "utf8")).trim()).toBe(major);
    expect(processesUnder(sparesDir())).toEqual([]);
  });

  it("ensure renames a spare into the project's directory and gives a working database with the project's role and name", async () => {
    const ensured = await runtime.ensure(spec);
    expect(readyLine(bed.logs.text(), spec.slug)?.["source"]).toBe("spare");
    expect(await spareEntries()).not.toContain(firstSpares[0]);
    await withApp(ensured, spec, async (client) => {
      const who = await client.query("SELECT current_user AS role, current_database() AS db");
      expect(who.rows[0]).toEqual({ role: `app_${spec.slug}`, db: spec.slug });
      await client.query("CREATE TABLE notes (body text NOT NULL)");
      await client.query("INSERT INTO notes VALUES ('kept')");
    });
    const pgdata = join(bed.dataDir, "instances", spec.slug, "pgdata");
    expect(processesUnder(pgdata).length).toBeGreaterThan(0);
    const placeholders = await runtime.adminQuery(
      spec,
      "SELECT (SELECT count(*) FROM pg_database WHERE datname = 'sota_template_app') + (SELECT count(*) FROM pg_roles WHERE rolname = 'sota_template_app') AS n",
    );
    expect(placeholders).toEqual([{ n: "0" }]);
  });

  it("makes a new spare in the background, and the next database gets it", async () => {
    await runtime.spareCopies.whenFull(AbortSignal.timeout(FILL_TIMEOUT_MS));
    const [refill] = await spareEntries();
    expect(refill).toMatch(/^s-[0-9a-f]{12}$/);
    expect(refill).not.toBe(firstSpares[0]);
    const other = newSpec("spare-other");
    await appQuery(await runtime.ensure(other), other);
    expect(readyLine(bed.logs.text(), other.slug)?.["source"]).toBe("spare");
    // Two databases from spares share nothing, their OS users included.
    await withApp(await runtime.ensure(other), other, async (client) => {
      const tables = await client.query("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'notes'");
      expect(tables.rows[0]).toEqual({ n: 0 });
    });
    if (process.getuid?.() === 0) {
      const owner = async (slug: string) => (await stat(join(bed.dataDir, "instances", slug, "pgdata"))).uid;
      expect(await owner(other.slug)).not.toBe(await owner(spec.slug));
    }
  });

  it("after a restart, keeps complete spares, removes half-built, foreign and surplus ones, and the spare-made database comes back with its data", async () => {
    await runtime.spareCopies.whenFull(AbortSignal.timeout(FILL_TIMEOUT_MS));
    await runtime.close();
    const [kept] = await spareEntries();
    await mkdir(join(sparesDir(), "tmp-0123456789ab"));
    await mkdir(join(sparesDir(), "s-00000000000f", "pgdata"), { recursive: true });
    await writeFile(join(sparesDir(), "s-00000000000f", "pgdata", "PG_VERSION"), "9\n");
    await writeFile(join(sparesDir(), "stray"), "");

    runtime = await bed.open({ spareCopies: 1 });
    expect(await spareEntries()).toEqual([kept]);
    expect(runtime.spareCopies.ready).toBe(1);
    await withApp(await runtime.ensure(spec), spec, async (client) => {
      expect((await client.query("SELECT body FROM notes")).rows).toEqual([{ body: "kept" }]);
    });
    expect(await spareEntries()).toEqual([kept]);
  });

  it("with spares turned off, a new database is copied from the template and earlier spares are removed", async () => {
    await runtime.close();
    runtime = await bed.open({ spareCopies: 0 });
    expect(await spareEntries()).toEqual([]);
    const cold = newSpec("spare-cold");
    await appQuery(await runtime.ensure(cold), cold);
    expect(readyLine(bed.logs.text(), cold.slug)?.["source"]).toBe("copy");
    expect(await spareEntries()).toEqual([]);
  });
});
