// Off-host copies through the service's front door: the whole app, as
// `npm start` runs it, with SOTA_BACKUP_S3_* pointing at a real S3-compatible
// server (s3rver, its own process on 127.0.0.1) and a real PostgreSQL +
// PgBouncer. A backup shows COPIED in ListBackups and the bucket holds
// ciphertext; an unreachable endpoint shows FAILED, counts, logs, and heals
// once it is back; a restore whose local file is gone uses the off-host copy,
// and refuses a damaged one with data_loss.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { startS3Server, type S3Server } from "../support/s3-server.js";

let h: Harness;
let s3: S3Server;
let slug: string;

beforeAll(async () => {
  s3 = await startS3Server();
  h = await startHarness(s3.env({ SOTA_BACKUP_S3_SYNC_SECONDS: "1", SOTA_BACKUP_S3_PREFIX: "e2e", SOTA_POOLER_PORTS: poolerPortsSetting(66) }));
  const ensured = await rest(`/v1/projects/${h.projectId}/database`, { method: "POST" });
  expect(ensured.status).toBe(200);
  slug = ensured.json.database.slug;
  await sql("CREATE TABLE secrets_of_the_tenant (id int PRIMARY KEY, note text); INSERT INTO secrets_of_the_tenant SELECT i, 'TENANT-ROW-MARKER' FROM generate_series(1, 20) i");
});

afterAll(async () => {
  await h?.stop();
  await s3?.destroy();
});

async function rest(path: string, options: { method?: string; token?: string } = {}): Promise<{ status: number; json: any }> {
  const response = await fetch(`${h.app.url}${path}`, {
    method: options.method ?? "GET",
    headers: { authorization: `Bearer ${options.token ?? h.tokens.project}` },
  });
  const text = await response.text();
  return { status: response.status, json: text && response.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text };
}

async function sql(text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: (await h.app.service.connection(h.projectId)).url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

async function backupNow(): Promise<string> {
  const created = await rest(`/v1/projects/${h.projectId}/database/backups?wait=true`, { method: "POST" });
  expect(created.json.backup.state).toBe("BACKUP_STATE_SUCCEEDED");
  return created.json.backup.id;
}

/** The backup as ListBackups shows it, once `done` says so (the copier runs every second here). */
async function listedWhen(backupId: string, done: (backup: any) => boolean): Promise<any> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const backup = (await rest(`/v1/projects/${h.projectId}/database/backups`)).json.backups.find((candidate: any) => candidate.id === backupId);
    if (done(backup)) return backup;
    if (Date.now() > deadline) throw new Error(`backup ${backupId} never reached the expected off-host state: ${JSON.stringify(backup?.offsite)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const localFile = (backupId: string) => join(h.dataDir, "backups", slug, `${backupId}.sql.gz`);
const objectKey = (backupId: string) => `e2e/${h.projectId}/backups/${backupId}.dump`;

describe("off-host copies through the API", () => {
  let first: string;

  it("a backup is COPIED in ListBackups, and the bucket holds its ciphertext with its checksum", async () => {
    first = await backupNow();
    const listed = await listedWhen(first, (backup) => backup.offsite?.state === "OFFSITE_STATE_COPIED");
    expect(listed.offsite).toMatchObject({ state: "OFFSITE_STATE_COPIED", attempts: 1 });
    expect(listed.offsite.copyTime).toEqual(expect.any(String));

    const stored = await s3.read(objectKey(first));
    const local = readFileSync(localFile(first));
    expect(stored.metadata["sota-sha256"]).toBe(listed.sha256);
    // Not the gzip file (which would start 1f 8b and share its bytes), not the rows: ciphertext.
    expect(stored.bytes.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b]))).toBe(false);
    expect(stored.bytes.includes(local.subarray(0, 32))).toBe(false);
    expect(stored.bytes.includes(local.subarray(local.length - 32))).toBe(false);
    expect(stored.bytes.includes("TENANT-ROW-MARKER")).toBe(false);
    expect(stored.bytes.length).toBeGreaterThan(local.length);
    expect(await s3.keys(`e2e/${h.projectId}/`)).toContain(`e2e/${h.projectId}/manifest`);
  });

  it("an unreachable endpoint: FAILED with attempts, the failure metric and an error log line; COPIED once it is back", async () => {
    await s3.stop();
    let second: string;
    try {
      second = await backupNow();
      const failed = await listedWhen(second, (backup) => backup.offsite?.state === "OFFSITE_STATE_FAILED");
      expect(failed.offsite.attempts).toBeGreaterThanOrEqual(1);
      expect(failed.offsite.error).toMatch(/upload/);
      const metrics = await (await fetch(`${h.app.url}/metrics`, { headers: { authorization: `Bearer ${h.tokens.admin}` } })).text();
      expect(metrics).toMatch(/sota_offsite_copy_failures_total\{kind="backup"\} [1-9]/);
      expect(metrics).toMatch(/sota_offsite_pending_objects [1-9]/);
      const logged = h.logs.map((line) => JSON.parse(line)).filter((entry) => entry.msg === "off-host copy of a backup failed; it is retried");
      // The first base backup may be failing to copy too: the dump's own line is looked for.
      expect(logged.find((entry) => entry.backupId === second)).toMatchObject({ level: 50, backupId: second, projectId: h.projectId });
    } finally {
      await s3.restart();
    }
    const healed = await listedWhen(second, (backup) => backup.offsite?.state === "OFFSITE_STATE_COPIED");
    expect(healed.offsite.attempts).toBeGreaterThanOrEqual(2);
    expect(healed.offsite.error ?? "").toBe("");
  });

  it("restores a backup whose local file is gone from its off-host copy, behind the same DATABASE_URL", async () => {
    rmSync(localFile(first));
    await sql("DELETE FROM secrets_of_the_tenant WHERE id > 5");
    const restored = await rest(`/v1/projects/${h.projectId}/database/backups/${first}/restore`, { method: "POST" });
    expect(restored.status).toBe(200);
    expect((await sql("SELECT count(*)::int AS n FROM secrets_of_the_tenant")).rows[0].n).toBe(20);
    expect(existsSync(localFile(first))).toBe(true);
    expect(h.logs.some((line) => line.includes("the backup's local file was restored from its off-host copy"))).toBe(true);
  });

  it("refuses, with data_loss and nothing changed, a restore whose only copy was damaged in the bucket", async () => {
    const original = await s3.read(objectKey(first));
    const damaged = Buffer.from(original.bytes);
    damaged[damaged.length - 100]! ^= 0x40;
    await s3.write(objectKey(first), damaged, original.metadata);
    rmSync(localFile(first));
    await sql("DELETE FROM secrets_of_the_tenant WHERE id > 5");

    const refused = await rest(`/v1/projects/${h.projectId}/database/backups/${first}/restore`, { method: "POST" });
    expect(refused.json.code).toBe("data_loss");
    expect((await sql("SELECT count(*)::int AS n FROM secrets_of_the_tenant")).rows[0].n).toBe(5);
    expect(existsSync(localFile(first))).toBe(false);
  });
});
