// The process driver's point-in-time recovery against the host's real
// PostgreSQL, pg_receivewal, pg_basebackup and PgBouncer: the shared contract,
// then what only this driver does (the receiver as the database's OS user, a
// slot gone missing, a recovery cut short by a crash of the service).
import { readdirSync, readFileSync } from "node:fs";
import { chown, mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import type { WalGeneration } from "../../src/runtime/runtime.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { describePitrContract } from "../support/pitr-contract.js";
import { eventually, newSpec, withApp } from "./process-helpers.js";

describePitrContract("process", async () => {
  const bed = await processTestBed(52);
  const runtime = await bed.open();
  return {
    runtime,
    // As a lost disk would: the server is still running when its files go.
    destroyData: async (target) => {
      await rm(join(bed.dataDir, "instances", target.slug, "pgdata"), { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    },
    cleanup: async () => {
      await runtime.close();
      await removeDataDir(bed.dataDir);
    },
  };
});

describe("process runtime: point-in-time recovery, driver behaviour", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  const spec = newSpec("pitr-proc");
  const dir = (): string => join(bed.dataDir, "instances", spec.slug);

  beforeAll(async () => {
    bed = await processTestBed(54);
    runtime = await bed.open();
    await runtime.ensure(spec);
    await streaming();
  });

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
  });

  async function streaming(): Promise<WalGeneration> {
    let current: WalGeneration | undefined;
    await eventually(async () => {
      current = (await runtime.pitr.walGenerations(spec)).at(-1);
      expect(current?.streaming).toBe(true);
    });
    return current!;
  }

  it("runs pg_receivewal as the database's OS user, writing into its generation's directory, which is that user's alone", async () => {
    const generation = await streaming();
    const owner = await stat(join(dir(), "pgdata"));
    const pid = receiverPid(dir());
    expect(pid).toBeDefined();
    const uid = Number(readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((line) => line.startsWith("Uid:"))!.split(/\s+/)[1]);
    expect(uid).toBe(owner.uid);
    const generationDir = await stat(join(dir(), "wal", generation.id));
    expect({ uid: generationDir.uid, mode: generationDir.mode & 0o777 }).toEqual({ uid: owner.uid, mode: 0o700 });
    // The archive's own directory is the service's: the child passes through, cannot add a generation.
    const archive = await stat(join(dir(), "wal"));
    expect({ uid: archive.uid, mode: archive.mode & 0o777 }).toEqual({ uid: process.getuid?.() ?? 0, mode: 0o710 });
    const settings = await runtime.adminQuery(spec, "SELECT current_setting('max_slot_wal_keep_size') AS keep, current_setting('wal_level') AS level");
    expect(settings).toEqual([{ keep: "1GB", level: "replica" }]);
  });

  it("a slot gone missing (a tenant's superuser dropped it) opens a new generation rather than leave a gap in the old one", async () => {
    const before = await streaming();
    const pid = receiverPid(dir())!;
    // Paused, the receiver cannot reconnect before the slot is gone.
    process.kill(pid, "SIGSTOP");
    try {
      await runtime.adminQuery(spec, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_replication WHERE application_name = 'sota_wal_receiver'");
      await runtime.adminQuery(spec, "SELECT pg_drop_replication_slot('sota_wal')");
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await eventually(async () => {
      const current = await streaming();
      expect(current.id > before.id).toBe(true);
    });
    const generations = (await runtime.pitr.walGenerations(spec)).map((generation) => generation.id);
    expect(generations).toContain(before.id);
    await runtime.pitr.flushWal(spec);
  });

  it("a recovery cut short by a crash of the service is undone by the next ensure: old data, old generation", async () => {
    const ensured = await runtime.ensure(spec);
    await withApp(ensured, spec, async (client) => {
      await client.query("CREATE TABLE survivor (n int)");
      await client.query("INSERT INTO survivor VALUES (7)");
    });
    const current = await streaming();
    await runtime.close();
    // What a crash between the swap and the end of the recovery leaves behind.
    await rename(join(dir(), "pgdata"), join(dir(), "pgdata.before-recovery"));
    await mkdir(join(dir(), "pgdata"), { mode: 0o700 });
    await writeFile(join(dir(), "pgdata", "PG_VERSION"), "15\n");
    await mkdir(join(dir(), "pgdata.recovering"), { mode: 0o700 });
    // The new generation, as its receiver left it.
    const user = await stat(join(dir(), "pgdata.before-recovery"));
    await mkdir(join(dir(), "wal", "29991231T235959Z"), { mode: 0o700 });
    await writeFile(join(dir(), "wal", "29991231T235959Z", "000000020000000000000009.partial"), "x");
    await chown(join(dir(), "wal", "29991231T235959Z", "000000020000000000000009.partial"), user.uid, user.gid);
    await chown(join(dir(), "wal", "29991231T235959Z"), user.uid, user.gid);
    await writeFile(join(dir(), "wal-generation"), "29991231T235959Z\n", { mode: 0o600 });
    await writeFile(join(dir(), "recovery-in-progress"), JSON.stringify({ kind: "in-place", previousGeneration: current.id, phase: "recovering" }), { mode: 0o600 });

    runtime = await bed.open();
    const again = await runtime.ensure(spec);
    const rows = await withApp(again, spec, (client) => client.query<{ n: number }>("SELECT n FROM survivor"));
    expect(rows.rows.map((row) => row.n)).toEqual([7]);
    expect(readdirSync(dir()).filter((name) => name.startsWith("pgdata") || name === "recovery-in-progress")).toEqual(["pgdata"]);
    const generations = await runtime.pitr.walGenerations(spec);
    expect(generations.map((generation) => generation.id)).not.toContain("29991231T235959Z");
    expect((await streaming()).id).toBe(current.id);
  });

  it("recovers a database that is stopped (removed with its data kept), and starts it", async () => {
    const backup = runtime.pitr.baseBackup(spec);
    const chunks: Buffer[] = [];
    for await (const chunk of backup.stream) chunks.push(chunk as Buffer);
    const info = await backup.info;
    const ensured = await runtime.ensure(spec);
    await withApp(ensured, spec, (client) => client.query("INSERT INTO survivor VALUES (8)"));
    await runtime.pitr.flushWal(spec);
    await runtime.remove(spec, { keepData: true });
    expect((await runtime.status(spec)).state).toBe("stopped");
    const { result } = await runtime.pitr.recover(spec, Readable.from(Buffer.concat(chunks)), { source: spec, generation: info.generation });
    expect(result.endpoint).toEqual(ensured.endpoint);
    const rows = await withApp(result, spec, (client) => client.query<{ n: number }>("SELECT n FROM survivor ORDER BY n"));
    expect(rows.rows.map((row) => row.n)).toEqual([7, 8]);
    await streaming();
  });
});

/** The pid of the pg_receivewal writing into instance directory `dir`'s archive. */
function receiverPid(dir: string): number | undefined {
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      if (args[0]?.endsWith("pg_receivewal") && args.some((arg) => arg.startsWith(join(dir, "wal") + "/"))) return Number(name);
    } catch {
      // Gone meanwhile.
    }
  }
  return undefined;
}
