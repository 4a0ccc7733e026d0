// Disaster recovery when the bucket holds dumps only (what a host whose
// runtime streams no WAL leaves: the daily dumps and the manifest), and when
// the bucket does not answer. Host A serves two projects until their copies
// are in the bucket and is lost whole; the bucket is then cut down to one
// project's dump and a manifest that lists only it, written with the master
// key as such a host writes it. On host B:
// - with the bucket down, Ensure of the project fails unavailable and makes
//   nothing (an empty database would stand in the recovery's way); Ensure of
//   a project B knows does not ask the bucket at all;
// - with the bucket back, Ensure brings it back from its dump, behind the
//   same DATABASE_URL;
// - with SOTA_BACKUP_S3_RECOVER_ON_ENSURE=false (the bucket gone for good),
//   Ensure makes new databases without asking it.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { slugForProject } from "../../src/names.js";
import { readManifest, writeManifest } from "../../src/offsite/manifest.js";
import { ObjectLayout } from "../../src/offsite/object-layout.js";
import { S3ObjectStore } from "../../src/offsite/object-store.js";
import type { Harness } from "../support/app-harness.js";
import { startDrBed, type DrBed } from "../support/dr-hosts.js";
import { eventually, rest } from "../support/pitr-api.js";
import { queryUrl } from "../support/url-query.js";

const PREFIX = "dumps-dr";
let bed: DrBed;
let a: Harness;
let b: Harness;
const dumped = { projectId: randomUUID(), slug: "dumped-shop", url: "" };
const other = { projectId: randomUUID(), slug: "switched-off", url: "" };
const deleted = { projectId: randomUUID(), slug: "deleted-shop", url: "" };
const pathOf = (projectId: string) => `/v1/projects/${projectId}/database`;

beforeAll(async () => {
  bed = await startDrBed(PREFIX, 38);
  a = await bed.host();
});

afterAll(async () => {
  await bed?.close();
});

describe("disaster recovery from dumps, and without the bucket", () => {
  let dumpId: string;
  let finalId: string;

  it("host A: a dump of one project and the other's base backup reach the bucket; A is lost", async () => {
    const host = a;
    for (const project of [dumped, other]) {
      expect((await rest(host, pathOf(project.projectId), { method: "POST", body: { slug: project.slug } })).status).toBe(200);
      project.url = (await host.app.service.connection(project.projectId)).url;
    }
    await queryUrl(dumped.url, "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 30)");
    await queryUrl(other.url, "CREATE TABLE others (id int)");
    const dump = await rest(host, `${pathOf(dumped.projectId)}/backups?wait=true`, { method: "POST" });
    expect(dump.json.backup.state).toBe("BACKUP_STATE_SUCCEEDED");
    dumpId = dump.json.backup.id;
    await bed.untilInManifest(dumped.projectId, [dumpId]);
    await bed.untilInManifest(other.projectId, []);

    // A third project is deleted on A: its final backup stays, and the bucket says so.
    expect((await rest(host, pathOf(deleted.projectId), { method: "POST", body: { slug: deleted.slug } })).status).toBe(200);
    deleted.url = (await host.app.service.connection(deleted.projectId)).url;
    await queryUrl(deleted.url, "CREATE TABLE kept (note text); INSERT INTO kept VALUES ('in the final backup')");
    const gone = await rest(host, pathOf(deleted.projectId), { method: "DELETE" });
    expect(gone.status).toBe(200);
    finalId = gone.json.finalBackup.id;
    await eventually("the bucket's manifest of the deleted database", async () => {
      const manifest = await bed.untilInManifest(deleted.projectId, [finalId]);
      return manifest.database?.state === "deleted" ? manifest : undefined;
    });
    await bed.lose(a);
  });

  it("the bucket keeps the dump only, as a host without point-in-time recovery leaves it", async () => {
    const objects = new S3ObjectStore(bed.s3.config({ prefix: PREFIX }));
    const layout = new ObjectLayout(PREFIX);
    const context = { objects, keyring: bed.offHost.keyring };
    try {
      const keys = await objects.list(layout.projectPrefix(dumped.projectId));
      await objects.delete(keys.filter((key) => key.endsWith(".base") || key.includes("/wal/")));
      const manifest = await readManifest(context, layout, dumped.projectId);
      await writeManifest(context, layout, { ...manifest, backups: manifest.backups.filter((backup) => backup.format === "dump"), walGenerations: [] });
      expect(await objects.list(layout.projectPrefix(dumped.projectId))).toEqual([layout.backup(dumped.projectId, dumpId, "dump").key, layout.manifest(dumped.projectId).key]);
    } finally {
      objects.close();
    }
  });

  it("host B, bucket down: Ensure of the project fails unavailable and makes nothing", async () => {
    b = await bed.host();
    await bed.s3.stop();
    try {
      const refused = await rest(b, pathOf(dumped.projectId), { method: "POST", token: b.tokens.deployer });
      expect(refused.status).toBe(503);
      expect(refused.json.code).toBe("unavailable");
      expect(refused.json.message).toMatch(/object storage.*did not answer.*nothing was created.*SOTA_BACKUP_S3_RECOVER_ON_ENSURE=false/);
      expect((await rest(b, pathOf(dumped.projectId))).status).toBe(404);
      expect(await b.app.store.listDatabases()).toEqual([]);
    } finally {
      await bed.s3.restart();
    }
  });

  it("bucket back: Ensure brings the project back from its dump behind the same DATABASE_URL", async () => {
    const host = b;
    const ensured = await rest(host, pathOf(dumped.projectId), { method: "POST", token: host.tokens.deployer });
    expect(ensured.status).toBe(200);
    expect(ensured.json).toMatchObject({ created: true, database: { slug: dumped.slug, state: "DATABASE_STATE_READY" } });
    expect((await host.app.service.connection(dumped.projectId)).url).toBe(dumped.url);
    expect((await queryUrl(dumped.url, "SELECT count(*)::int AS n FROM orders")).rows[0].n).toBe(30);
    expect(host.logs.some((line) => line.includes("database brought back from object storage: its newest dump"))).toBe(true);
    const { backups } = (await rest(host, `${pathOf(dumped.projectId)}/backups`)).json;
    expect(backups.find((backup: any) => backup.id === dumpId)).toMatchObject({ state: "BACKUP_STATE_SUCCEEDED", offsite: { state: "OFFSITE_STATE_COPIED" } });
  });

  it("a project this host knows is ensured without asking the bucket, even while it is down", async () => {
    const host = b;
    await bed.s3.stop();
    try {
      const ensured = await rest(host, pathOf(dumped.projectId), { method: "POST", token: host.tokens.deployer });
      expect(ensured.json).toMatchObject({ created: false, database: { state: "DATABASE_STATE_READY" } });
    } finally {
      await bed.s3.restart();
    }
  });

  it("a deleted database comes back deleted with its backups: Ensure makes a new one, and its final backup restores into it", async () => {
    const host = b;
    const ensured = await rest(host, pathOf(deleted.projectId), { method: "POST", token: host.tokens.deployer });
    expect(ensured.json).toMatchObject({ created: true, database: { slug: deleted.slug, state: "DATABASE_STATE_READY" } });
    // A new database, as on the lost host after a delete: a new password, and empty.
    const fresh = (await host.app.service.connection(deleted.projectId)).url;
    expect(fresh).not.toBe(deleted.url);
    expect((await queryUrl(fresh, "SELECT to_regclass('public.kept') AS t")).rows[0].t).toBeNull();
    const { backups } = (await rest(host, `${pathOf(deleted.projectId)}/backups`)).json;
    expect(backups.find((backup: any) => backup.id === finalId)).toMatchObject({ kind: "BACKUP_KIND_FINAL", offsite: { state: "OFFSITE_STATE_COPIED" } });
    // Fetched back from the bucket for the restore.
    expect((await rest(host, `${pathOf(deleted.projectId)}/backups/${finalId}/restore`, { method: "POST" })).status).toBe(200);
    expect((await queryUrl(fresh, "SELECT note FROM kept")).rows).toEqual([{ note: "in the final backup" }]);
  });

  it("refuses an Ensure naming another slug than the bucket's: failed_precondition, nothing made", async () => {
    const host = b;
    const refused = await rest(host, pathOf(other.projectId), { method: "POST", token: host.tokens.deployer, body: { slug: "not-its-slug" } });
    expect(refused.json.code).toBe("failed_precondition");
    expect(refused.json.message).toContain(other.slug);
    expect(await host.app.store.getDatabase(other.projectId)).toBeUndefined();
  });

  it("SOTA_BACKUP_S3_RECOVER_ON_ENSURE=false, the bucket gone: Ensure makes a new database without asking it", async () => {
    const host = b;
    host.env["SOTA_BACKUP_S3_RECOVER_ON_ENSURE"] = "false";
    await host.restart();
    await bed.s3.stop();
    const ensured = await rest(host, pathOf(other.projectId), { method: "POST", token: host.tokens.deployer });
    expect(ensured.status).toBe(200);
    expect(ensured.json).toMatchObject({ created: true, database: { slug: slugForProject(other.projectId) } });
    // A new database, not the one the bucket holds: its own password, none of the lost host's tables.
    const fresh = (await host.app.service.connection(other.projectId)).url;
    expect(fresh).not.toBe(other.url);
    expect((await queryUrl(fresh, "SELECT to_regclass('public.others') AS t")).rows[0].t).toBeNull();
  });
});
