// Point-in-time recovery, process runtime: each database's WAL archive lies in
// directories of its own OS user, which a tenant who became superuser of its
// cluster controls (it runs any program as that user). That user is the
// attacker here: it plants links, FIFOs and directories in its archive, named
// as WAL files, pointing at root's files and at another tenant's archive, then
// lets the service list, read, recover from and prune it. Root must never
// read, copy or delete through any of them, and no tenant reaches another's
// archive.
import { chmod, mkdir, mkdtemp, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../src/runtime/process/index.js";
import { RuntimeError, type DatabaseSpec, type EnsureResult, type PointInTimeRecovery } from "../../src/runtime/runtime.js";
import { processTestBed, removeDataDir, type ProcessTestBed } from "../support/process-runtime-harness.js";
import { newSpec, withApp } from "../runtime/process-helpers.js";
import { ownerOf, runAs, type OsIdentity } from "./os-child.js";

const ROOT_CONTENT = "# a root-owned file: its owner and content must not change\n";

describe.skipIf(process.getuid?.() !== 0)("security: the WAL archive is the tenant's, and root follows nothing in it", () => {
  let bed: ProcessTestBed;
  let runtime: ProcessRuntime;
  let pitr: PointInTimeRecovery;
  let rootDir: string;
  let rootFile: string;
  const a = newSpec("pitr-sec-a");
  const b = newSpec("pitr-sec-b");
  let ensuredA: EnsureResult;
  let userA: OsIdentity;
  let userB: OsIdentity;
  let base: Buffer;
  let baseGeneration: string;

  beforeAll(async () => {
    bed = await processTestBed(53);
    runtime = await bed.open();
    pitr = runtime.pitr;
    rootDir = await mkdtemp(join(tmpdir(), "sota-root-owned-"));
    await chmod(rootDir, 0o755);
    rootFile = join(rootDir, "secret");
    await writeFile(rootFile, ROOT_CONTENT, { mode: 0o644 });
    ensuredA = await runtime.ensure(a);
    await runtime.ensure(b);
    userA = await ownerOf(join(instanceDir(a), "pgdata"));
    userB = await ownerOf(join(instanceDir(b), "pgdata"));
    await withApp(ensuredA, a, async (client) => {
      await client.query("CREATE TABLE kept (n int)");
      await client.query("INSERT INTO kept VALUES (1)");
    });
    const backup = pitr.baseBackup(a);
    base = await collect(backup.stream);
    baseGeneration = (await backup.info).generation;
    await collect(pitr.baseBackup(b).stream);
    await pitr.flushWal(a);
    await pitr.flushWal(b);
  });

  afterAll(async () => {
    await runtime?.close();
    if (bed) await removeDataDir(bed.dataDir);
    if (rootDir) await removeDataDir(rootDir);
  });

  const instanceDir = (spec: DatabaseSpec) => join(bed.dataDir, "instances", spec.slug);
  const generationDir = (spec: DatabaseSpec, id: string) => join(instanceDir(spec), "wal", id);

  async function expectRootFileUntouched(): Promise<void> {
    const stats = await stat(rootFile);
    expect({ uid: stats.uid, gid: stats.gid }).toEqual({ uid: 0, gid: 0 });
    expect(await readFile(rootFile, "utf8")).toBe(ROOT_CONTENT);
  }

  /** As `who`, in `dir`: fails the test when the tenant's own command fails. */
  async function asTenant(who: OsIdentity, script: string, dir: string): Promise<void> {
    const outcome = await runAs(who, "sh", ["-c", script], dir);
    expect(outcome.stderr).toBe("");
    expect(outcome.code).toBe(0);
  }

  /** A complete segment of B's archive: another tenant's file. */
  async function segmentOfB(): Promise<string> {
    const [generation] = await pitr.walGenerations(b);
    const segment = generation!.segments.find((candidate) => candidate.complete && /^[0-9A-F]{24}$/.test(candidate.name));
    return join(generationDir(b, generation!.id), segment!.name);
  }

  it("links and FIFOs named as WAL files are neither listed nor read", async () => {
    const dir = generationDir(a, baseGeneration);
    const ofB = await segmentOfB();
    await asTenant(
      userA,
      [
        `ln -s ${rootFile} 0000000100000000000000F0`,
        `ln -s ${rootFile} 0000000100000000000000F1.partial`,
        "mkfifo 0000000100000000000000F2",
        `ln -s ${ofB} 0000000100000000000000F3`,
        `ln -s ${rootFile} 00000009.history`,
      ].join(" && "),
      dir,
    );
    // Hard links to others' files are refused by the kernel here (fs.protected_hardlinks).
    expect((await runAs(userA, "ln", [rootFile, join(dir, "0000000100000000000000F4")])).code).not.toBe(0);

    const listed = (await pitr.walGenerations(a)).flatMap((generation) => generation.segments.map((segment) => segment.name));
    for (const planted of ["0000000100000000000000F0", "0000000100000000000000F1", "0000000100000000000000F2", "0000000100000000000000F3", "00000009.history"]) {
      expect(listed).not.toContain(planted);
      const error = await collect(pitr.readWal(a, baseGeneration, planted)).catch((reason: unknown) => reason);
      expect(error, planted).toBeInstanceOf(RuntimeError);
      expect(String((error as Error).message)).not.toContain("root-owned");
    }
    await expectRootFileUntouched();
  });

  it("a tenant cannot read, list or add to another tenant's archive, nor add a generation to its own", async () => {
    const ofB = await segmentOfB();
    expect((await runAs(userA, "cat", [ofB])).code).not.toBe(0);
    expect((await runAs(userA, "ls", [join(instanceDir(b), "wal")])).code).not.toBe(0);
    expect((await runAs(userA, "ln", ["-s", "/", join(instanceDir(b), "wal", "20000101T000000Z")])).code).not.toBe(0);
    // Its own archive's directory is the service's: generations are made by the service only.
    expect((await runAs(userA, "ln", ["-s", rootDir, join(instanceDir(a), "wal", "20000101T000000Z")])).code).not.toBe(0);
    expect((await runAs(userA, "mkdir", [join(instanceDir(a), "wal", "20000101T000000Z")])).code).not.toBe(0);
    expect((await pitr.walGenerations(a)).map((generation) => generation.id)).not.toContain("20000101T000000Z");
    // Nor B's user A's.
    expect((await runAs(userB, "ls", [generationDir(a, baseGeneration)])).code).not.toBe(0);
  });

  it("a clone from an archive with planted links copies none of them, and reads no file of root's or of another tenant", async () => {
    const dir = generationDir(a, baseGeneration);
    const ofB = await segmentOfB();
    const [generation] = await pitr.walGenerations(a);
    // Named as the next segments after the newest: a recovery that followed them would read them as WAL.
    const newest = generation!.segments.filter((segment) => /^[0-9A-F]{24}$/.test(segment.name)).at(-1)!.name;
    const next = (offset: number) => (BigInt(`0x${newest}`) + BigInt(offset)).toString(16).toUpperCase().padStart(24, "0");
    await asTenant(userA, `ln -s ${rootFile} ${next(1)} && ln -s ${ofB} ${next(2)}.partial`, dir);
    const clone = newSpec("pitr-sec-clone");
    const { result } = await pitr.recover(clone, Readable.from(base), { source: a, generation: baseGeneration });
    const rows = await withApp(result, clone, (client) => client.query<{ n: number }>("SELECT n FROM kept"));
    expect(rows.rows.map((row) => row.n)).toEqual([1]);
    const pgWal = await readdir(join(instanceDir(clone), "pgdata", "pg_wal"));
    expect(pgWal).not.toContain(next(1));
    expect(pgWal).not.toContain(next(2));
    // What the clone's server holds is its own user's, not A's.
    const cloneUser = await ownerOf(join(instanceDir(clone), "pgdata"));
    expect(cloneUser.uid).not.toBe(userA.uid);
    for (const name of pgWal.filter((entry) => /^[0-9A-F]{24}$/.test(entry))) {
      expect((await stat(join(instanceDir(clone), "pgdata", "pg_wal", name))).uid).toBe(cloneUser.uid);
    }
    await expectRootFileUntouched();
    await runtime.remove(clone, { keepData: false });
  });

  it("pruning removes planted links by name and empties a generation as the tenant: root's files and directories stay", async () => {
    const dir = generationDir(a, baseGeneration);
    const rootSubdir = join(rootDir, "tree");
    await mkdir(rootSubdir, { mode: 0o755 });
    await writeFile(join(rootSubdir, "inside"), ROOT_CONTENT, { mode: 0o644 });
    // A segment name older than any: pruned by name if it were listed.
    await asTenant(userA, `ln -s ${rootFile} 000000010000000000000000 && ln -s ${rootSubdir} tree && mkdir own && ln -s ${rootFile} own/link`, dir);
    // A new generation makes the planted one old; keeping nothing removes it whole.
    await pitr.recover(a, Readable.from(base), { source: a, generation: baseGeneration });
    const before = (await pitr.walGenerations(a)).map((generation) => generation.id);
    expect(before).toContain(baseGeneration);
    await pitr.pruneWal(a, new Map());
    const after = (await pitr.walGenerations(a)).map((generation) => generation.id);
    expect(after).toEqual([before.at(-1)]);
    expect(await readdir(join(instanceDir(a), "wal"))).toEqual([before.at(-1)]);
    await expectRootFileUntouched();
    expect(await readFile(join(rootSubdir, "inside"), "utf8")).toBe(ROOT_CONTENT);
    expect((await stat(rootSubdir)).uid).toBe(0);
  });

  it("pruning old segments of a kept generation deletes by name: planted links are not followed, their targets stay", async () => {
    // Complete segments to prune.
    await runtime.adminQuery(a, "SELECT pg_switch_wal()");
    await pitr.flushWal(a);
    await runtime.adminQuery(a, "SELECT pg_switch_wal()");
    await pitr.flushWal(a);
    const [current] = await pitr.walGenerations(a);
    const dir = generationDir(a, current!.id);
    const newest = current!.segments.at(-1)!;
    expect(current!.segments.filter((segment) => segment.complete && segment.name < newest.name).length).toBeGreaterThan(0);
    await asTenant(userA, `ln -s ${rootFile} 000000010000000000000001`, dir);
    await pitr.pruneWal(a, new Map([[current!.id, newest.name]]));
    await expectRootFileUntouched();
    const left = (await pitr.walGenerations(a))[0]!.segments.filter((segment) => /^[0-9A-F]{24}$/.test(segment.name)).map((segment) => segment.name);
    expect(left).toEqual([newest.name]);
    // Never listed, so never deleted: the tenant's own link, in its own directory.
    expect(await readdir(dir)).toContain("000000010000000000000001");
  });
});

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks);
}
