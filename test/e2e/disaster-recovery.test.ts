// Issue 12, item 6: the host is lost, the bucket is not. Service A (process
// runtime, real PostgreSQL, PgBouncer, pg_basebackup and pg_receivewal,
// SOTA_BACKUP_S3_* pointing at a real S3-compatible server on 127.0.0.1)
// serves a project until its base backup, a dump and its WAL are in the
// bucket; then A stops and its WHOLE data dir is deleted. Service B starts on
// a new, empty data dir with nothing but the same master key file, tokens
// file and bucket, and the deploy engine's ordinary Ensure brings the
// database back: the very same DATABASE_URL, every row up to the last one
// copied off-host, the lost host's backups listed and downloadable.
import { createHash, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Harness } from "../support/app-harness.js";
import { startDrBed, type DrBed } from "../support/dr-hosts.js";
import { eventually, rest } from "../support/pitr-api.js";
import { portRange } from "../support/process-runtime-harness.js";
import { queryUrl } from "../support/url-query.js";

let bed: DrBed;
let a: Harness;
let b: Harness;
const projectId = randomUUID();
const slug = "dr-shop";
const path = `/v1/projects/${projectId}/database`;

beforeAll(async () => {
  bed = await startDrBed("dr", 36);
  a = await bed.host();
});

afterAll(async () => {
  await bed?.close();
});

/** The project's backups as ListBackups shows them to the deploy engine. */
async function listed(host: Harness): Promise<any[]> {
  return (await rest(host, `${path}/backups`, { token: host.tokens.deployer })).json.backups;
}

describe("disaster recovery from the bucket on a new host", () => {
  let url: string;
  let dumpId: string;
  let dumpSha: string;
  let baseId: string;

  it("host A: the database, its base backup, a dump and its WAL reach the bucket", async () => {
    const host = a;
    // Another database first takes the range's first pooler port: host B, which has none, must still give ours the one it had.
    expect((await rest(host, `/v1/projects/${randomUUID()}/database`, { method: "POST", token: host.tokens.deployer })).status).toBe(200);
    const ensured = await rest(host, path, { method: "POST", token: host.tokens.deployer, body: { slug } });
    expect(ensured.status).toBe(200);
    url = (await host.app.service.connection(projectId)).url;
    expect(Number(new URL(url).port)).toBeGreaterThan(portRange(36).min);
    await queryUrl(url, "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT i, 'before the dump' FROM generate_series(1, 50) i");

    const dump = await rest(host, `${path}/backups?wait=true`, { method: "POST", token: host.tokens.deployer });
    expect(dump.json.backup.state).toBe("BACKUP_STATE_SUCCEEDED");
    dumpId = dump.json.backup.id;
    dumpSha = dump.json.backup.sha256;
    await queryUrl(url, "INSERT INTO orders SELECT i, 'after the dump' FROM generate_series(51, 80) i");

    // The first base backup (taken after Ensure) and the dump, both copied.
    const copied = await eventually("the base backup and the dump copied off-host", async () => {
      const backups = await listed(host);
      const base = backups.find((backup) => backup.format === "BACKUP_FORMAT_BASE" && backup.offsite?.state === "OFFSITE_STATE_COPIED");
      const dumped = backups.find((backup) => backup.id === dumpId && backup.offsite?.state === "OFFSITE_STATE_COPIED");
      return base && dumped ? base : undefined;
    });
    baseId = copied.id;
    await bed.untilInManifest(projectId, [baseId, dumpId]);

    // The last row, then WAL copied after the receiver has it on disk (flushWal waits for that).
    await queryUrl(url, "INSERT INTO orders VALUES (81, 'the last row')");
    const flushed = await host.app.runtime.pitr!.flushWal({ projectId, slug });
    await eventually("the WAL holding the last row copied off-host", async () => {
      const wal = await host.app.store.listOffsiteWal(projectId);
      return wal.some((record) => record.copiedAt.getTime() > flushed.getTime()) ? true : undefined;
    });
    const metrics = await (await fetch(`${host.app.url}/metrics`, { headers: { authorization: `Bearer ${host.tokens.admin}` } })).text();
    expect(metrics).toMatch(/sota_offsite_last_success_timestamp_seconds [1-9]/);
    expect(await bed.s3.keys(`dr/${projectId}/`)).toEqual(expect.arrayContaining([`dr/${projectId}/manifest`, `dr/${projectId}/backups/${baseId}.base`, `dr/${projectId}/backups/${dumpId}.dump`]));
  });

  it("host A is lost: the service stops, its whole data dir is deleted and none of its processes is left", async () => {
    await bed.lose(a);
  });

  it("host B: Ensure brings the database back with the very same DATABASE_URL and every row up to the last one copied", async () => {
    b = await bed.host();
    const host = b;
    const ensured = await rest(host, path, { method: "POST", token: host.tokens.deployer });
    expect(ensured.status).toBe(200);
    expect(ensured.json).toMatchObject({ created: true, database: { slug, state: "DATABASE_STATE_READY" } });
    expect((await host.app.service.connection(projectId)).url).toBe(url);
    const { rows } = await queryUrl(url, "SELECT count(*)::int AS n, max(id) AS last, (SELECT note FROM orders WHERE id = 81) AS note FROM orders");
    expect(rows[0]).toEqual({ n: 81, last: 81, note: "the last row" });
    // Writable: a primary on a new timeline, not a standby left in recovery.
    await queryUrl(url, "INSERT INTO orders VALUES (82, 'on host B')");
    expect(host.logs.join("")).not.toContain(new URL(url).password);
  });

  it("lists the lost host's backups as copied off-host, serves its dump, and takes a base backup of its own", async () => {
    const host = b;
    const backups = await listed(host);
    expect(backups.find((backup) => backup.id === baseId)).toMatchObject({ format: "BACKUP_FORMAT_BASE", state: "BACKUP_STATE_SUCCEEDED", offsite: { state: "OFFSITE_STATE_COPIED" } });
    expect(backups.find((backup) => backup.id === dumpId)).toMatchObject({ format: "BACKUP_FORMAT_DUMP", sha256: dumpSha, offsite: { state: "OFFSITE_STATE_COPIED" } });

    const download = await fetch(`${host.app.url}${path}/backups/${dumpId}/download`, { headers: { authorization: `Bearer ${host.tokens.deployer}` } });
    expect(download.status).toBe(200);
    expect(createHash("sha256").update(Buffer.from(await download.arrayBuffer())).digest("hex")).toBe(dumpSha);

    // A new WAL generation needs a base backup of its own: taken after the recovery, and the window starts there.
    const window = await eventually("host B's own recovery window", async () => (await rest(host, path, { token: host.tokens.deployer })).json?.recoveryWindow);
    expect(window.streaming).toBe(true);
    const own = (await listed(host)).filter((backup) => backup.format === "BACKUP_FORMAT_BASE" && backup.id !== baseId);
    expect(own.length).toBeGreaterThanOrEqual(1);
    // The bucket's WAL objects are host B's records now: its retention and manifest carry on from them.
    expect((await host.app.store.listOffsiteWal(projectId)).length).toBeGreaterThan(0);
  });

  it("the next Ensure is an ordinary one: nothing made again, the same URL", async () => {
    const host = b;
    const again = await rest(host, path, { method: "POST", token: host.tokens.deployer });
    expect(again.json).toMatchObject({ created: false, database: { slug, state: "DATABASE_STATE_READY" } });
    expect((await host.app.service.connection(projectId)).url).toBe(url);
    expect((await queryUrl(url, "SELECT count(*)::int AS n FROM orders")).rows[0].n).toBe(82);
  });
});
