// Issue 11 item 5 through the API: a tenant must not raise its own limits.
// A project token may neither call UpdateDatabase nor pass limits to Ensure
// (PERMISSION_DENIED, nothing stored); the operator's tokens (admin,
// deployer) may, over REST and gRPC alike; bad values are refused with
// INVALID_ARGUMENT and change nothing; GetDatabase shows the limits in
// effect and how they are enforced.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ SOTA_DB_MEMORY_MB: "512", SOTA_DB_CPUS: "1", SOTA_DB_PIDS: "300" });
  const ensured = await call("POST", h.tokens.deployer, {});
  expect(ensured.status).toBe(200);
});

afterAll(async () => {
  await h?.stop();
});

async function call(method: string, token: string, body?: unknown): Promise<{ status: number; json: Record<string, any> }> {
  const response = await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, json: (await response.json()) as Record<string, any> };
}

const enforcement = process.getuid?.() === 0 ? /^cgroup-v[12]$/ : /^(cgroup-v[12]|none)$/;

describe("limits through the API", () => {
  it("shows the defaults in effect and how they are enforced", async () => {
    const { status, json } = await call("GET", h.tokens.project);
    expect(status).toBe(200);
    expect(json["database"]["limits"]).toMatchObject({ memoryMb: 512, cpus: 1, pids: 300 });
    expect(json["database"]["limitsEnforcement"]).toMatch(enforcement);
  });

  it("refuses a project token that tries to raise its own limits, and stores nothing", async () => {
    const update = await call("PATCH", h.tokens.project, { limits: { memoryMb: 65536, cpus: 64 } });
    expect(update.status).toBe(403);
    expect(update.json["code"]).toBe("permission_denied");
    const ensure = await call("POST", h.tokens.project, { limits: { memoryMb: 65536 } });
    expect(ensure.status).toBe(403);
    expect(ensure.json["code"]).toBe("permission_denied");
    // Its own project, even: and the other project's token is refused before the body is read.
    expect((await call("PATCH", h.tokens.other, { limits: { memoryMb: 65536 } })).status).toBe(403);
    const { json } = await call("GET", h.tokens.admin);
    expect(json["database"]["limits"]).toMatchObject({ memoryMb: 512, cpus: 1, pids: 300 });
    // A plain Ensure by the project token still works.
    expect((await call("POST", h.tokens.project, {})).status).toBe(200);
  });

  it("refuses bad values with invalid_argument and changes nothing", async () => {
    for (const limits of [{ memoryMb: 32 }, { cpus: 0.001 }, { pids: 10 }, { memoryMb: -5 }, {}]) {
      const answer = await call("PATCH", h.tokens.admin, { limits });
      expect(answer.status, JSON.stringify(limits)).toBe(400);
      expect(answer.json["code"]).toBe("invalid_argument");
    }
    const { json } = await call("GET", h.tokens.admin);
    expect(json["database"]["limits"]).toMatchObject({ memoryMb: 512, cpus: 1, pids: 300 });
  });

  it("lets the operator change a project's limits in place, field by field, and back to the defaults", async () => {
    const updated = await call("PATCH", h.tokens.deployer, { limits: { memoryMb: 256, cpus: 0.5 } });
    expect(updated.status).toBe(200);
    expect(updated.json["database"]["limits"]).toMatchObject({ memoryMb: 256, cpus: 0.5, pids: 300 });
    if (/^cgroup/.test(String(updated.json["database"]["limitsEnforcement"]))) {
      // Applied to the running postmaster's cgroup, without a restart.
      expect(await memoryLimitOf(String(updated.json["database"]["slug"]))).toBe(256 * 1024 * 1024);
    }
    const pids = await call("PATCH", h.tokens.admin, { limits: { pids: 200 } });
    expect(pids.json["database"]["limits"]).toMatchObject({ memoryMb: 256, cpus: 0.5, pids: 200 });
    // Ensure keeps the stored override; -1 returns a field to the default.
    expect((await call("POST", h.tokens.deployer, {})).status).toBe(200);
    const reset = await call("POST", h.tokens.deployer, { limits: { memoryMb: -1 } });
    expect(reset.status).toBe(200);
    const { json } = await call("GET", h.tokens.project);
    expect(json["database"]["limits"]).toMatchObject({ memoryMb: 512, cpus: 0.5, pids: 200 });
  });
});

describe("size quota", () => {
  it("reports a database over its quota (GetDatabase, metric, error log) and never truncates nor refuses its writes", async () => {
    const connection = await fetch(`${h.app.url}/sota.database.v1.DatabaseService/GetConnection`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.tokens.deployer}`, "content-type": "application/json" },
      body: JSON.stringify({ projectId: h.projectId }),
    }).then((response) => response.json() as Promise<Record<string, string>>);
    const client = new pg.Client({ connectionString: connection["databaseUrl"] });
    await client.connect();
    try {
      await client.query("CREATE TABLE kept AS SELECT g AS n, repeat('x', 200) AS pad FROM generate_series(1, 20000) g");
      const quota = await call("PATCH", h.tokens.admin, { limits: { sizeQuotaMb: 2 } });
      expect(quota.status).toBe(200);
      const { json } = await call("GET", h.tokens.project);
      const reported = json["database"]["sizeQuota"];
      expect(reported).toMatchObject({ quotaBytes: String(2 * 1024 * 1024), exceeded: true });
      expect(Number(reported["sizeBytes"])).toBeGreaterThan(2 * 1024 * 1024);
      expect(json["database"]["limits"]["sizeQuotaMb"]).toBe("2");
      const metrics = await fetch(`${h.app.url}/metrics`, { headers: { authorization: `Bearer ${h.tokens.admin}` } }).then((r) => r.text());
      expect(metrics).toContain(`sota_database_over_size_quota{project_id="${h.projectId}"} 1`);
      expect(h.logs.join("")).toMatch(/"level":50[^\n]*database is over its size quota/);
      // Nothing truncated, writes still accepted.
      expect((await client.query("SELECT count(*)::int AS n FROM kept")).rows[0].n).toBe(20000);
      await client.query("INSERT INTO kept SELECT 0, 'more'");
      // No quota any more: nothing reported, the series is gone.
      await call("PATCH", h.tokens.admin, { limits: { sizeQuotaMb: 0 } });
      const after = await call("GET", h.tokens.project);
      expect(after.json["database"]["sizeQuota"]).toBeUndefined();
      const cleared = await fetch(`${h.app.url}/metrics`, { headers: { authorization: `Bearer ${h.tokens.admin}` } }).then((r) => r.text());
      expect(cleared).not.toContain(`sota_database_over_size_quota{project_id="${h.projectId}"}`);
    } finally {
      await client.end();
    }
  });
});

/** The memory limit of the cgroup the database's postmaster runs in (v1 or v2). */
async function memoryLimitOf(slug: string): Promise<number> {
  const pid = (await readFile(join(h.dataDir, "instances", slug, "pgdata", "postmaster.pid"), "utf8")).split("\n")[0];
  const lines = (await readFile(`/proc/${pid}/cgroup`, "utf8")).split("\n");
  const v1 = lines.find((line) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(line));
  if (v1) return Number(await readFile(join("/sys/fs/cgroup/memory", v1.split(":")[2]!, "memory.limit_in_bytes"), "utf8"));
  const v2 = lines.find((line) => line.startsWith("0::"))!;
  return Number(await readFile(join("/sys/fs/cgroup", v2.slice(3), "memory.max"), "utf8"));
}
