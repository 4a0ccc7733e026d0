// Backup flooding (item 7 of the tenant isolation issue): a hostile tenant
// holding its project token must not be able to fill the disk every tenant
// shares with backups, nor to run verifications (each a full scratch copy of
// a database) without bound. Attacked through the service's real front door,
// REST and gRPC, over real PostgreSQL and PgBouncer:
// - manual backups back to back with a project token: refused past the limit
//   (HTTP 429 / RESOURCE_EXHAUSTED), no extra file;
// - VerifyBackup (and a restore) on many ids at once from two tenants: the
//   scratch databases really on the servers never exceed the bound;
// - free space below the reserve: backup, verify and restore refused up
//   front, nothing half-written, older backups untouched.
import { createHash } from "node:crypto";
import { readdir, readFile, statfs } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpcClients, type GrpcClients } from "../support/grpc-client.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
const MANUAL_LIMIT = 2;
/** grpc-js status code of RESOURCE_EXHAUSTED. */
const GRPC_RESOURCE_EXHAUSTED = 8;

let h: Harness;
let rpc: GrpcClients;
let a: { projectId: string; slug: string; token: string };
let b: { projectId: string; slug: string; token: string };

beforeAll(async () => {
  h = await startHarness({
    SOTA_POOLER_PORTS: poolerPortsSetting(40),
    SOTA_BACKUP_MANUAL_LIMIT: `${MANUAL_LIMIT}/1h`,
    SOTA_BACKUP_LOAD_CONCURRENCY: "1",
  });
  rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  a = { projectId: h.projectId, slug: "flood-a", token: h.tokens.project };
  b = { projectId: h.otherProjectId, slug: "flood-b", token: h.tokens.other };
  for (const tenant of [a, b]) {
    expect((await rest("POST", `/v1/projects/${tenant.projectId}/database`, tenant.token, { slug: tenant.slug })).status).toBe(200);
    // Big enough that loading it into a scratch database takes a while: overlapping loads are visible.
    const client = new pg.Client({ connectionString: (await h.app.service.connection(tenant.projectId)).url });
    await client.connect();
    try {
      await client.query("CREATE TABLE filler (id int PRIMARY KEY, v text)");
      await client.query("INSERT INTO filler SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 150000) i");
    } finally {
      await client.end();
    }
  }
}, 240_000);

afterAll(async () => {
  rpc?.close();
  await h?.stop();
});

async function rest(method: string, path: string, token: string, body?: object): Promise<{ status: number; json: any; headers: Headers }> {
  const response = await fetch(`${h.app.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return {
    status: response.status,
    json: text && response.headers.get("content-type")?.includes("json") ? JSON.parse(text) : text,
    headers: response.headers,
  };
}

/** The operator's view of a tenant's server (its superuser, through the runtime): what really exists there. */
async function adminSql(tenant: { projectId: string; slug: string }, sql: string, database?: string) {
  return h.app.runtime.adminQuery({ projectId: tenant.projectId, slug: tenant.slug }, sql, database);
}

/** A tenant's dumps as ListBackups lists them, newest first. */
async function listedDumps(tenant: { projectId: string; token: string }): Promise<any[]> {
  const { backups } = (await rest("GET", `/v1/projects/${tenant.projectId}/database/backups`, tenant.token)).json;
  return backups.filter((backup: { format: string }) => backup.format === "BACKUP_FORMAT_DUMP");
}

async function scratchLoads(tenant: { projectId: string; slug: string }): Promise<number> {
  const rows = await adminSql(tenant, String.raw`SELECT count(*)::int AS n FROM pg_database WHERE datname ~ '^sota_(verify|restore)_'`);
  return Number(rows[0]?.["n"] ?? 0);
}

/** Dump files on disk (any state, partial ones included), name → sha256. Base backups, taken by the service on its own, are not the tenant's to flood. */
async function backupFiles(slug: string): Promise<Map<string, string>> {
  const dir = join(h.dataDir, "backups", slug);
  const files = new Map<string, string>();
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.includes(".sql.gz")) continue;
    files.set(name, createHash("sha256").update(await readFile(join(dir, name))).digest("hex"));
  }
  return files;
}

describe("manual backups back to back with a project token", () => {
  it("are refused past the limit over REST (429) and gRPC (RESOURCE_EXHAUSTED), and no extra file appears", async () => {
    const path = `/v1/projects/${a.projectId}/database/backups?wait=true`;
    for (let i = 0; i < MANUAL_LIMIT; i++) {
      const taken = await rest("POST", path, a.token);
      expect(taken.status).toBe(200);
      expect(taken.json.backup.state).toBe("BACKUP_STATE_SUCCEEDED");
    }
    const files = await backupFiles(a.slug);
    const listed = await listedDumps(a);
    expect(files.size).toBe(MANUAL_LIMIT);

    // A bounded flood, as a tenant script would send it.
    for (let i = 0; i < 5; i++) {
      const refused = await rest("POST", path, a.token);
      expect(refused.status).toBe(429);
      expect(refused.json.code).toBe("resource_exhausted");
      expect(refused.json.message).toMatch(/manual backups/i);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    }
    const grpcRefusal = await rpc.database("createBackup", { projectId: a.projectId, wait: true }, a.token).then(
      () => undefined,
      (error: { code: number; details: string }) => error,
    );
    expect(grpcRefusal?.code).toBe(GRPC_RESOURCE_EXHAUSTED);
    // A restore writes a safety backup first: it draws on the same budget, or it would be the way around the limit.
    const restore = await rest("POST", `/v1/projects/${a.projectId}/database/backups/${listed[0].id}/restore`, a.token);
    expect(restore.status).toBe(429);
    expect(restore.json.message).toMatch(/manual backups/i);

    expect(await backupFiles(a.slug)).toEqual(files);
    expect(await listedDumps(a)).toEqual(listed);
    // Another tenant's budget is its own.
    expect((await rest("POST", `/v1/projects/${b.projectId}/database/backups?wait=true`, b.token)).status).toBe(200);
    // The deploy engine (trusted) is not held up by what the tenant spent: its pre-deploy backup goes through.
    const deploy = await rpc.database("createBackup", { projectId: a.projectId, wait: true }, h.tokens.deployer);
    expect(deploy.backup.state).toBe("BACKUP_STATE_SUCCEEDED");
  });
});

describe("verifications and restores at once", () => {
  it("never run more scratch copies than the bound, across tenants; the excess is refused with RESOURCE_EXHAUSTED", async () => {
    // Backups to load, taken by the deploy engine (not counted against the tenants' limit).
    const ids = new Map<typeof a, string[]>([
      [a, []],
      [b, []],
    ]);
    for (const [tenant, list] of ids) {
      for (let i = 0; i < 3; i++) {
        const { backup } = await rpc.database("createBackup", { projectId: tenant.projectId, wait: true }, h.tokens.deployer);
        expect(backup.state).toBe("BACKUP_STATE_SUCCEEDED");
        list.push(backup.id);
      }
    }

    let observedMax = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const [na, nb] = await Promise.all([scratchLoads(a), scratchLoads(b)]);
        observedMax = Math.max(observedMax, na + nb);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();

    const calls = [
      ...[...ids].flatMap(([tenant, list]) =>
        list.map((id) => rest("POST", `/v1/projects/${tenant.projectId}/database/backups/${id}/verify`, tenant.token)),
      ),
      rest("POST", `/v1/projects/${b.projectId}/database/backups/${ids.get(b)![0]}/restore`, b.token),
    ];
    const answers = await Promise.all(calls);
    polling = false;
    await poller;

    const refused = answers.filter((answer) => answer.status === 429);
    const done = answers.filter((answer) => answer.status === 200);
    expect(refused.length + done.length).toBe(answers.length);
    for (const answer of refused) expect(answer.json.code).toBe("resource_exhausted");
    expect(refused.length).toBeGreaterThan(0);
    expect(done.length).toBeGreaterThan(0);
    // The poller saw loads running, and never more than the bound (1) across both servers.
    expect(observedMax).toBe(1);
    for (const answer of done.filter((answer) => answer.json.backup)) expect(answer.json.backup.verification).toBe("VERIFICATION_STATE_PASSED");

    // Nothing is left behind, and a slot frees: the refused ones can be retried.
    expect((await scratchLoads(a)) + (await scratchLoads(b))).toBe(0);
    const retried = await rest("POST", `/v1/projects/${a.projectId}/database/backups/${ids.get(a)![2]}/verify`, a.token);
    expect(retried.status).toBe(200);
    expect(retried.json.backup.verification).toBe("VERIFICATION_STATE_PASSED");
  });
});

describe("free space below the reserve", () => {
  it("refuses backup, verify and restore up front: nothing half-written, older backups untouched", async () => {
    const before = await listedDumps(b);
    const good = before.find((backup: { state: string }) => backup.state === "BACKUP_STATE_SUCCEEDED");
    expect(good).toBeDefined();
    const filesBefore = await backupFiles(b.slug);
    const rowsBefore = await adminSql(b, "SELECT count(*)::int AS n FROM public.filler", b.slug);

    // Real free space, really below the reserve: the reserve is set above what the disk has free.
    const fs = await statfs(h.dataDir);
    h.env["SOTA_BACKUP_MIN_FREE"] = String(fs.bavail * fs.bsize + 64 * 1024 ** 3);
    await h.restart();
    rpc.close();
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);

    // One after the other: a project has one verification or restore at a time.
    for (const path of ["backups?wait=true", `backups/${good.id}/verify`, `backups/${good.id}/restore`]) {
      const refused = await rest("POST", `/v1/projects/${b.projectId}/database/${path}`, b.token);
      expect(refused.status).toBe(429);
      expect(refused.json).toMatchObject({ code: "resource_exhausted", message: expect.stringMatching(/free disk space/i) });
    }
    const grpcRefusal = await rpc.database("createBackup", { projectId: b.projectId, wait: true }, h.tokens.deployer).then(
      () => undefined,
      (error: { code: number; details: string }) => error,
    );
    expect(grpcRefusal?.code).toBe(GRPC_RESOURCE_EXHAUSTED);
    expect(grpcRefusal?.details).toMatch(/free disk space/i);

    // No record, no file (partial or whole), the older ones byte for byte as they were, the data as it was.
    expect(await listedDumps(b)).toEqual(before);
    expect(await backupFiles(b.slug)).toEqual(filesBefore);
    expect(await adminSql(b, "SELECT count(*)::int AS n FROM public.filler", b.slug)).toEqual(rowsBefore);
    expect(await scratchLoads(b)).toBe(0);
    expect(h.logs.join("")).toMatch(/not enough free disk space/);
  });
});
