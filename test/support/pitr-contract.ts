// What every driver's point-in-time recovery (Runtime.pitr) must do, run
// against each driver by its own test file:
//
//   describePitrContract("process", async () => ({ runtime, destroyData, cleanup }));
//
// The tests run in order and share state (one runtime, one source database,
// its base backups and WAL generations), because every recovery costs real
// seconds. They use only the Runtime interface, reach databases through
// `endpoint.loopback` with a real `pg` client, and take times from the
// server (flushWal), never from this machine's clock.
import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withApp } from "../runtime/runtime-contract.js";
import {
  RuntimeError,
  type BaseBackupInfo,
  type DatabaseSpec,
  type EnsureResult,
  type PointInTimeRecovery,
  type Runtime,
  type RuntimeTarget,
  type WalGeneration,
} from "../../src/runtime/runtime.js";

export interface PitrHarness {
  /** A fresh runtime on empty state, whose `pitr` is set. */
  readonly runtime: Runtime;
  /**
   * Destroys the database's data directory (or volume) while its server
   * runs, as a failed disk or an operator's mistake would: the recovery point
   * objective case.
   */
  destroyData(target: RuntimeTarget): Promise<void>;
  /** Closes the runtime and removes everything the suite created. */
  cleanup(): Promise<void>;
}

/** Within this, a running receiver has a new generation streaming. */
const STREAMING_WITHIN_MS = 30_000;
const SEGMENT = /^[0-9A-F]{24}$/;

export function describePitrContract(name: string, setup: () => Promise<PitrHarness>): void {
  describe(`point-in-time recovery contract: ${name}`, () => {
    let harness: PitrHarness | undefined;
    let runtime: Runtime;
    let pitr: PointInTimeRecovery;
    const suffix = randomBytes(3).toString("hex");
    const source = newSpec(`pitr-src-${suffix}`);
    const clone = newSpec(`pitr-clone-${suffix}`);
    let first: EnsureResult;
    let base: Buffer;
    let baseInfo: BaseBackupInfo;
    /** Server times: after row 2's commit and before row 3's. */
    let betweenRows2And3: Date;

    beforeAll(async () => {
      harness = await setup();
      runtime = harness.runtime;
      if (runtime.pitr === undefined) throw new Error(`the ${name} runtime has no pitr`);
      pitr = runtime.pitr;
    });

    afterAll(async () => {
      await harness?.cleanup();
    });

    it("ensure starts archiving the database's WAL into a generation that streams", async () => {
      first = await runtime.ensure(source);
      const generation = await streamingGeneration(pitr, source);
      expect(generation.id).toMatch(/^\d{8}T\d{6}Z$/);
      // The only one: a new database has no older WAL.
      expect((await pitr.walGenerations(source)).map((g) => g.id)).toEqual([generation.id]);
    });

    it("a base backup belongs to the current generation and names its first segment", async () => {
      await withApp(first, source, async (client) => {
        await client.query("CREATE TABLE rows_seen (n int PRIMARY KEY)");
        await client.query("INSERT INTO rows_seen VALUES (1)");
      });
      // Older segments for pruneWal to remove later.
      await runtime.adminQuery(source, "SELECT pg_switch_wal()");
      await runtime.adminQuery(source, "SELECT pg_switch_wal()");
      const backup = pitr.baseBackup(source);
      base = await collect(backup.stream);
      baseInfo = await backup.info;
      const [generation] = await pitr.walGenerations(source);
      expect(baseInfo.generation).toBe(generation?.id);
      expect(baseInfo.startSegment).toMatch(SEGMENT);
      expect(base.length).toBeGreaterThan(1024 * 1024);
      // The archive already holds what the backup needs from its first segment on.
      const names = generation!.segments.map((segment) => segment.name);
      expect(names).toContain(baseInfo.startSegment);
      expect(names.some((segmentName) => SEGMENT.test(segmentName) && segmentName < baseInfo.startSegment)).toBe(true);
    });

    it("flushWal returns the server's time once everything before it is archived, and readWal streams a segment", async () => {
      await withApp(first, source, (client) => client.query("INSERT INTO rows_seen VALUES (2)"));
      // Past the millisecond the commit of row 2 fell in (Dates carry milliseconds).
      await sleep(50);
      betweenRows2And3 = await pitr.flushWal(source);
      expect(Math.abs(betweenRows2And3.getTime() - Date.now())).toBeLessThan(60_000);
      await sleep(50);
      await withApp(first, source, (client) => client.query("INSERT INTO rows_seen VALUES (3)"));
      await pitr.flushWal(source);

      const [generation] = await pitr.walGenerations(source);
      const newest = generation!.segments.at(-1)!;
      expect(newest.complete).toBe(false);
      expect(generation!.lastReceivedAt).not.toBeNull();
      expect(generation!.bytes).toBe(generation!.segments.reduce((sum, segment) => sum + segment.bytes, 0));
      // The partial segment is read under its complete name.
      const bytes = await collect(pitr.readWal(source, generation!.id, newest.name));
      expect(bytes.length).toBe(newest.bytes);
      await expect(collect(pitr.readWal(source, generation!.id, "000000010000000000000FFF"))).rejects.toBeInstanceOf(RuntimeError);
      await expect(collect(pitr.readWal(source, generation!.id, "../../pgdata/PG_VERSION"))).rejects.toBeInstanceOf(RuntimeError);
      await expect(collect(pitr.readWal(source, "../wal", newest.name))).rejects.toBeInstanceOf(RuntimeError);
    });

    it("recover to a time between two commits gives exactly the rows before it, behind the same endpoint and password, in a new generation", async () => {
      const generationsBefore = (await pitr.walGenerations(source)).map((g) => g.id);
      const { generation, result } = await pitr.recover(source, Readable.from(base), {
        source,
        generation: baseInfo.generation,
        time: betweenRows2And3,
      });
      expect(result.endpoint).toEqual(first.endpoint);
      expect(await rowsSeen(result, source)).toEqual([1, 2]);
      expect(generationsBefore).not.toContain(generation);
      const generations = await pitr.walGenerations(source);
      // The old generation stays (its base backups still need it), oldest first.
      expect(generations.map((g) => g.id)).toEqual([...generationsBefore, generation]);
      expect((await streamingGeneration(pitr, source)).id).toBe(generation);
      // The recovered database takes writes, and they are archived.
      await withApp(result, source, (client) => client.query("INSERT INTO rows_seen VALUES (10)"));
      await pitr.flushWal(source);
    });

    it("a second recovery, from the older generation and without a time, replays everything it archived", async () => {
      const { result } = await pitr.recover(source, Readable.from(base), { source, generation: baseInfo.generation });
      expect(await rowsSeen(result, source)).toEqual([1, 2, 3]);
      await streamingGeneration(pitr, source);
    });

    it("recovers a row committed a second before the data directory was destroyed (the recovery point objective)", async () => {
      const backup = pitr.baseBackup(source);
      const latest = await collect(backup.stream);
      const info = await backup.info;
      await withApp(first, source, (client) => client.query("INSERT INTO rows_seen VALUES (20)"));
      await sleep(1_000);
      await harness!.destroyData(source);
      const { result } = await pitr.recover(source, Readable.from(latest), { source, generation: info.generation });
      expect(result.endpoint).toEqual(first.endpoint);
      expect(await rowsSeen(result, source)).toEqual([1, 2, 3, 20]);
      await streamingGeneration(pitr, source);
    });

    it("a failed recovery leaves the database serving as it was, still archiving into its generation", async () => {
      const generationsBefore = await pitr.walGenerations(source);
      const current = generationsBefore.at(-1)!.id;
      // Not a tar at all.
      const garbage = Readable.from([randomBytes(4 * 1024 * 1024)]);
      const error = await pitr.recover(source, garbage, { source, generation: baseInfo.generation }).catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(RuntimeError);
      expect((error as Error).message).not.toContain(source.password);
      expect(await rowsSeen(await runtime.ensure(source), source)).toEqual([1, 2, 3, 20]);

      // A target past the last archived commit: PostgreSQL replays everything, then refuses to promote.
      const unreached = new Date(Date.now() + 3_600_000);
      const refused = await pitr
        .recover(source, Readable.from(base), { source, generation: baseInfo.generation, time: unreached })
        .catch((reason: unknown) => reason);
      expect(refused).toBeInstanceOf(RuntimeError);
      expect(await rowsSeen(first, source)).toEqual([1, 2, 3, 20]);
      // A generation the archive does not hold: refused before anything is touched.
      const unknown = await pitr
        .recover(source, Readable.from(base), { source, generation: "19990101T000000Z" })
        .catch((reason: unknown) => reason);
      expect(unknown).toBeInstanceOf(RuntimeError);
      const generationsAfter = await pitr.walGenerations(source);
      expect(generationsAfter.map((g) => g.id)).toEqual(generationsBefore.map((g) => g.id));
      expect((await streamingGeneration(pitr, source)).id).toBe(current);
    });

    it("a clone is a new database with its own role, database and password; the source is only read", async () => {
      const sourceGenerations = (await pitr.walGenerations(source)).map((g) => g.id);
      const { generation, result } = await pitr.recover(clone, Readable.from(base), {
        source,
        generation: baseInfo.generation,
        time: betweenRows2And3,
      });
      expect(result.endpoint).not.toEqual(first.endpoint);
      expect(await rowsSeen(result, clone)).toEqual([1, 2]);
      const names = await withApp(result, clone, async (client) => {
        const row = await client.query<{ role: string; db: string; owner: string }>(
          "SELECT current_user AS role, current_database() AS db, pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()",
        );
        return row.rows[0];
      });
      expect(names).toEqual({ role: `app_${clone.slug}`, db: clone.slug, owner: `app_${clone.slug}` });
      // Nothing of the source's name is left to log in as.
      const leftovers = await runtime.adminQuery(
        clone,
        `SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'app_${source.slug}') AS roles, (SELECT count(*) FROM pg_database WHERE datname = '${source.slug}') AS databases`,
      );
      expect(leftovers).toEqual([{ roles: "0", databases: "0" }]);
      // The source's password does not open the clone.
      await expect(withApp(result, { ...clone, password: source.password }, (client) => client.query("SELECT 1"))).rejects.toThrow();
      expect((await streamingGeneration(pitr, clone)).id).toBe(generation);
      // The source: same rows, same archive, still streaming.
      expect(await rowsSeen(first, source)).toEqual([1, 2, 3, 20]);
      expect((await pitr.walGenerations(source)).map((g) => g.id)).toEqual(sourceGenerations);
      await streamingGeneration(pitr, source);
    });

    it("pruneWal removes the generations and segments no kept base backup needs, never the current generation", async () => {
      const before = await pitr.walGenerations(source);
      expect(before.length).toBeGreaterThanOrEqual(3);
      const current = before.at(-1)!;
      const oldest = before[0]!;
      expect(oldest.id).toBe(baseInfo.generation);
      // Keep only the first base backup: its generation from its start segment on.
      await pitr.pruneWal(source, new Map([[oldest.id, baseInfo.startSegment]]));
      const after = await pitr.walGenerations(source);
      expect(after.map((g) => g.id)).toEqual([oldest.id, current.id]);
      const kept = after[0]!;
      const keptSegments = kept.segments.filter((segment) => SEGMENT.test(segment.name)).map((segment) => segment.name);
      expect(keptSegments.every((segmentName) => segmentName >= baseInfo.startSegment)).toBe(true);
      expect(keptSegments).toEqual(
        oldest.segments.filter((segment) => SEGMENT.test(segment.name) && segment.name >= baseInfo.startSegment).map((segment) => segment.name),
      );
      expect(kept.bytes).toBeLessThan(oldest.bytes);
      // What is left still recovers.
      const { result } = await pitr.recover(source, Readable.from(base), { source, generation: oldest.id, time: betweenRows2And3 });
      expect(await rowsSeen(result, source)).toEqual([1, 2]);
      // Nothing kept: only the current generation stays.
      await pitr.pruneWal(source, new Map());
      const currentNow = (await pitr.walGenerations(source)).map((g) => g.id);
      expect(currentNow).toHaveLength(1);
      await streamingGeneration(pitr, source);
    });

    it("removing a database removes its WAL archive", async () => {
      await runtime.remove(clone, { keepData: false });
      expect(await pitr.walGenerations(clone)).toEqual([]);
      await runtime.remove(source, { keepData: false });
      expect(await pitr.walGenerations(source)).toEqual([]);
    });
  });
}

function newSpec(prefix: string): DatabaseSpec {
  return { projectId: randomUUID(), slug: prefix, password: randomBytes(16).toString("hex") };
}

/** The current generation once its receiver streams (bounded wait). */
async function streamingGeneration(pitr: PointInTimeRecovery, target: RuntimeTarget): Promise<WalGeneration> {
  const until = Date.now() + STREAMING_WITHIN_MS;
  for (;;) {
    const generations = await pitr.walGenerations(target);
    const current = generations.at(-1);
    if (current?.streaming) return current;
    if (Date.now() > until) throw new Error(`no WAL generation of ${target.slug} streams: ${JSON.stringify(generations.map((g) => ({ id: g.id, streaming: g.streaming })))}`);
    await sleep(200);
  }
}

async function rowsSeen(result: EnsureResult, spec: DatabaseSpec): Promise<number[]> {
  return withApp(result, spec, async (client) => {
    const rows = await client.query<{ n: number }>("SELECT n FROM rows_seen ORDER BY n");
    return rows.rows.map((row) => row.n);
  });
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks);
}
