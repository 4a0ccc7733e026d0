// Disaster recovery trusts the bucket no more than it must: its owner (or
// anyone who can write to it) is hostile. Every object is bound to its name
// by its encryption (the object's name is in its key derivation), the
// manifest included, so an object moved from project A's prefix into project
// B's does not decrypt there: a new host asked to Ensure B refuses with
// data_loss and makes nothing for B (no record, no database, no OS user's
// files, no backup record or fetched file), whichever object was moved: the
// manifest, the base backup, or a WAL segment (which fails the recovery half
// way, and the recovery is undone). A manifest whose slug another project
// owns on the new host is refused (already_exists) and makes nothing either.
// Once the bucket holds B's own objects again, B comes back whole.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ObjectLayout } from "../../src/offsite/object-layout.js";
import type { Harness } from "../support/app-harness.js";
import { processesUnder, startDrBed, type DrBed } from "../support/dr-hosts.js";
import { rest } from "../support/pitr-api.js";
import { queryUrl } from "../support/url-query.js";

const PREFIX = "hostile";
const layout = new ObjectLayout(PREFIX);
let bed: DrBed;
let a: Harness;
let c: Harness;
const victimA = { projectId: randomUUID(), slug: "bucket-victim-a", url: "" };
const victimB = { projectId: randomUUID(), slug: "bucket-victim-b", url: "" };

beforeAll(async () => {
  bed = await startDrBed(PREFIX, 39);
  a = await bed.host();
});

afterAll(async () => {
  await bed?.close();
});

const pathOf = (projectId: string) => `/v1/projects/${projectId}/database`;

/** The bucket's owner copies one object over another, metadata and all; `undo` puts the original back. */
async function overwrite(target: string, source: string): Promise<{ undo(): Promise<void> }> {
  const original = await bed.s3.read(target);
  const planted = await bed.s3.read(source);
  await bed.s3.write(target, planted.bytes, planted.metadata);
  return { undo: () => bed.s3.write(target, original.bytes, original.metadata) };
}

/** Nothing of the project on the new host: no record, backups, WAL records, instance, fetched files or processes. */
async function nothingFor(host: Harness, project: { projectId: string; slug: string }): Promise<void> {
  expect((await rest(host, pathOf(project.projectId))).status).toBe(404);
  expect(await host.app.store.getDatabase(project.projectId)).toBeUndefined();
  expect(await host.app.store.listBackups(project.projectId)).toEqual([]);
  expect(await host.app.store.listOffsiteCopies(project.projectId)).toEqual([]);
  expect(await host.app.store.listOffsiteWal(project.projectId)).toEqual([]);
  expect(existsSync(join(host.dataDir, "instances", project.slug))).toBe(false);
  expect(existsSync(join(host.dataDir, "backups", project.slug))).toBe(false);
  expect(processesUnder(join(host.dataDir, "instances", project.slug))).toEqual([]);
}

async function ensureAnswer(host: Harness, projectId: string): Promise<{ status: number; code: string; message: string }> {
  const answer = await rest(host, pathOf(projectId), { method: "POST", token: host.tokens.deployer });
  return { status: answer.status, code: answer.json?.code ?? "", message: answer.json?.message ?? "" };
}

describe("a hostile bucket during disaster recovery", () => {
  let baseOf: Record<string, string>;
  let walOf: Record<string, string[]>;

  it("host A: two projects' base backups and WAL reach the bucket; A is lost", async () => {
    const host = a;
    for (const project of [victimA, victimB]) {
      expect((await rest(host, pathOf(project.projectId), { method: "POST", body: { slug: project.slug } })).status).toBe(200);
      project.url = (await host.app.service.connection(project.projectId)).url;
      await queryUrl(project.url, `CREATE TABLE mine (owner text); INSERT INTO mine VALUES ('${project.slug}')`);
      await bed.untilCopied(host, project);
    }
    await bed.lose(a);

    baseOf = {};
    walOf = {};
    for (const project of [victimA, victimB]) {
      const base = (await bed.manifest(project.projectId))!.backups.find((backup) => backup.format === "base")!;
      baseOf[project.projectId] = base.key;
      walOf[project.projectId] = await bed.s3.keys(layout.walPrefix(project.projectId, base.walGeneration!));
      expect(walOf[project.projectId]!.length).toBeGreaterThan(0);
    }
    c = await bed.host();
  });

  it("refuses project A's manifest copied into project B's prefix: data_loss, nothing made for B", async () => {
    const planted = await overwrite(layout.manifest(victimB.projectId).key, layout.manifest(victimA.projectId).key);
    try {
      const refused = await ensureAnswer(c, victimB.projectId);
      expect(refused.code).toBe("data_loss");
      expect(refused.message).toMatch(/nothing was created/);
      await nothingFor(c, victimB);
    } finally {
      await planted.undo();
    }
  });

  it("refuses project A's base backup copied over project B's: data_loss, nothing made for B", async () => {
    const planted = await overwrite(baseOf[victimB.projectId]!, baseOf[victimA.projectId]!);
    try {
      const refused = await ensureAnswer(c, victimB.projectId);
      expect(refused.code).toBe("data_loss");
      await nothingFor(c, victimB);
    } finally {
      await planted.undo();
    }
  });

  it("refuses project A's WAL copied over project B's newest WAL file: the recovery fails with data_loss and is undone", async () => {
    const target = walOf[victimB.projectId]!.at(-1)!;
    const source = walOf[victimA.projectId]!.at(-1)!;
    const planted = await overwrite(target, source);
    try {
      const refused = await ensureAnswer(c, victimB.projectId);
      expect(refused.code).toBe("data_loss");
      expect(refused.message).toMatch(/off-host copy .* refusing to use it/);
      await nothingFor(c, victimB);
    } finally {
      await planted.undo();
    }
  });

  it("refuses a manifest whose slug another project owns on this host: already_exists, nothing made", async () => {
    const squatter = randomUUID();
    const made = await rest(c, pathOf(squatter), { method: "POST", token: c.tokens.deployer, body: { slug: victimA.slug } });
    expect(made.status).toBe(200);
    const refused = await ensureAnswer(c, victimA.projectId);
    expect(refused.code).toBe("already_exists");
    expect(refused.message).toContain(squatter);
    expect(await c.app.store.getDatabase(victimA.projectId)).toBeUndefined();
    expect(await c.app.store.listBackups(victimA.projectId)).toEqual([]);
    // The squatter's database is untouched: none of A's tables in it.
    const url = (await c.app.service.connection(squatter)).url;
    expect((await queryUrl(url, "SELECT to_regclass('public.mine') AS t")).rows[0].t).toBeNull();
  });

  it("with its own objects back, project B comes back whole behind its old URL", async () => {
    const ensured = await ensureAnswer(c, victimB.projectId);
    expect(ensured.status).toBe(200);
    expect((await c.app.service.connection(victimB.projectId)).url).toBe(victimB.url);
    expect((await queryUrl(victimB.url, "SELECT owner FROM mine")).rows).toEqual([{ owner: victimB.slug }]);
  });
});
