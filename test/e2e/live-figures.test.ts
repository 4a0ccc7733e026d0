// Live figures (issue 11, item 6), against real PostgreSQL and PgBouncer
// started by the process runtime: GetDatabase's usage and /metrics' per-database
// gauges and pooler counters follow what clients really do, show no secret, and
// a project token sees only its own project's figures.
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

let h: Harness;
let url = "";
const open: pg.Client[] = [];

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(80) });
  expect((await rest(`/v1/projects/${h.projectId}/database`, { method: "POST", token: h.tokens.deployer })).status).toBe(200);
  // GetConnection has no REST path: the deploy engine's Connect call.
  const answer = await fetch(`${h.app.url}/sota.database.v1.DatabaseService/GetConnection`, {
    method: "POST",
    headers: { authorization: `Bearer ${h.tokens.deployer}`, "content-type": "application/json" },
    body: JSON.stringify({ projectId: h.projectId }),
  });
  const connection = (await answer.json()) as any;
  url = connection.databaseUrl;
  expect(url).toMatch(/^postgresql:\/\//);
});

afterAll(async () => {
  await closeAll();
  await h?.stop();
});

function rest(path: string, init: { method?: string; token?: string } = {}) {
  return fetch(`${h.app.url}${path}`, {
    method: init.method ?? "GET",
    headers: init.token ? { authorization: `Bearer ${init.token}` } : {},
  });
}

async function usage(token = h.tokens.project): Promise<any> {
  const response = await rest(`/v1/projects/${h.projectId}/database`, { token });
  expect(response.status).toBe(200);
  return response.json();
}

async function client(): Promise<pg.Client> {
  // DATABASE_URL says 127.0.0.1 in the process runtime: loopback only.
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  open.push(c);
  return c;
}

async function closeAll(): Promise<void> {
  await Promise.all(open.splice(0).map((c) => c.end().catch(() => undefined)));
}

/** Polls GetDatabase until `check` holds (the pooler counts a client once it logged in), at most 40 times. */
async function usageWhen(check: (usage: any) => boolean): Promise<any> {
  let body: any;
  for (let attempt = 0; attempt < 40; attempt++) {
    body = await usage();
    if (body.usage && check(body.usage)) return body.usage;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return body.usage;
}

async function scrape(): Promise<string> {
  const response = await fetch(`${h.app.url}/metrics`, { headers: { authorization: `Bearer ${h.tokens.admin}` } });
  expect(response.status).toBe(200);
  return response.text();
}

function sample(body: string, metric: string, labels: string): number | undefined {
  const line = body.split("\n").find((l) => l.startsWith(`${metric}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

/** Scrapes until `check` holds: figures are cached a few seconds between scrapes. At most 40 scrapes. */
async function scrapeWhen(check: (body: string) => boolean): Promise<string> {
  let body = "";
  for (let attempt = 0; attempt < 40; attempt++) {
    body = await scrape();
    if (check(body)) return body;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return body;
}

describe("GetDatabase's live figures", () => {
  it("reports size, connections and the pool limits in effect to the project's own token", async () => {
    const body = await usage();
    expect(body.usageUnavailable ?? "").toBe("");
    expect(Number(body.usage.sizeBytes)).toBeGreaterThan(1_000_000);
    expect(body.usage).toMatchObject({ maxClientConnections: 100, poolSize: 20 });
    expect(body.usage.clientConnectionsWaiting ?? 0).toBe(0);
    expect(Date.parse(body.usage.readTime)).toBeGreaterThan(Date.now() - 60_000);
    expect(JSON.stringify(body)).not.toMatch(/postgresql:\/\/|password/i);
    expect(JSON.stringify(body)).not.toContain(new URL(url).password);
  });

  it("counts the client connections that are open", async () => {
    await closeAll();
    const clients = await Promise.all(Array.from({ length: 5 }, client));
    await Promise.all(clients.map((c) => c.query("SELECT 1")));
    const seen = await usageWhen((u) => (u.clientConnectionsActive ?? 0) === 5);
    expect(seen.clientConnectionsActive).toBe(5);
    await closeAll();
    const after = await usageWhen((u) => (u.clientConnectionsActive ?? 0) === 0);
    expect(after.clientConnectionsActive ?? 0).toBe(0);
    // The servers they used stay in the pool, idle.
    expect(after.serverConnectionsIdle).toBeGreaterThan(0);
  });

  it("shows a waiting client and a full pool when every server connection is held", async () => {
    // Transaction pooling: an open transaction holds its server connection. 20 of them fill the pool.
    const holders = await Promise.all(Array.from({ length: 20 }, client));
    await Promise.all(holders.map((c) => c.query("BEGIN; SELECT 1")));
    const late = await client();
    const waiting = late.query("SELECT 1");
    const seen = await usageWhen((u) => (u.clientConnectionsWaiting ?? 0) === 1);
    expect(seen).toMatchObject({ clientConnectionsWaiting: 1, serverConnectionsActive: 20, clientConnectionsActive: 20 });

    const body = await scrapeWhen((text) => sample(text, "sota_pooler_client_connections", `project_id="${h.projectId}",state="waiting"`) === 1);
    expect(sample(body, "sota_pooler_client_connections", `project_id="${h.projectId}",state="waiting"`)).toBe(1);
    expect(sample(body, "sota_pooler_server_connections", `project_id="${h.projectId}",state="active"`)).toBe(20);

    await Promise.all(holders.map((c) => c.query("COMMIT")));
    await waiting;
    const freed = await usageWhen((u) => (u.clientConnectionsWaiting ?? 0) === 0);
    expect(freed.clientConnectionsWaiting ?? 0).toBe(0);
    await closeAll();
  });

  it("sees the size grow when data is written", async () => {
    const before = Number((await usage()).usage.sizeBytes);
    const c = await client();
    await c.query("CREATE TABLE filler AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 8000) AS g");
    await closeAll();
    const after = Number((await usage()).usage.sizeBytes);
    expect(after - before).toBeGreaterThan(4_000_000);
  });

  it("gives another project's token nothing of this project", async () => {
    const response = await rest(`/v1/projects/${h.projectId}/database`, { token: h.tokens.other });
    expect(response.status).toBe(403);
    const text = await response.text();
    expect(text).not.toMatch(/sizeBytes|clientConnections/);
  });
});

describe("/metrics' per-database figures", () => {
  it("exports the gauges with the project id label, and nothing secret", async () => {
    const body = await scrapeWhen((text) => sample(text, "sota_database_up", `project_id="${h.projectId}"`) === 1);
    const id = `project_id="${h.projectId}"`;
    expect(sample(body, "sota_database_up", id)).toBe(1);
    expect(sample(body, "sota_database_size_bytes", id)).toBeGreaterThan(1_000_000);
    expect(sample(body, "sota_pooler_max_client_connections", id)).toBe(100);
    expect(sample(body, "sota_pooler_pool_size", id)).toBe(20);
    for (const state of ["active", "waiting"]) expect(sample(body, "sota_pooler_client_connections", `${id},state="${state}"`)).toBeGreaterThanOrEqual(0);
    for (const state of ["active", "idle"]) expect(sample(body, "sota_pooler_server_connections", `${id},state="${state}"`)).toBeGreaterThanOrEqual(0);
    expect(body).toMatch(/# TYPE sota_pooler_queries_total counter/);
    for (const secret of [new URL(url).password, url, ...Object.values(h.tokens)]) expect(body).not.toContain(secret);
  });

  it("counts the pooler's queries and transactions as counters that grow", async () => {
    const id = `project_id="${h.projectId}"`;
    const before = await scrape();
    const queries = sample(before, "sota_pooler_queries_total", id) ?? 0;
    const transactions = sample(before, "sota_pooler_transactions_total", id) ?? 0;
    const c = await client();
    for (let i = 0; i < 25; i++) await c.query("SELECT 1");
    await closeAll();
    // PgBouncer folds its totals into SHOW STATS every stats_period (60 s by default), and the scrape caches for a few seconds.
    const after = await scrapeWhen((text) => (sample(text, "sota_pooler_queries_total", id) ?? 0) >= queries + 25);
    expect(sample(after, "sota_pooler_queries_total", id)).toBeGreaterThanOrEqual(queries + 25);
    expect(sample(after, "sota_pooler_transactions_total", id)).toBeGreaterThanOrEqual(transactions + 25);
    expect(sample(after, "sota_pooler_received_bytes_total", id)).toBeGreaterThan(0);
    expect(sample(after, "sota_pooler_sent_bytes_total", id)).toBeGreaterThan(0);
  });
});

describe("a database that cannot answer", () => {
  it("does not hold GetDatabase or a scrape: a frozen PostgreSQL is reported, within the figures' timeout", async () => {
    const slug = (await usage()).database.slug;
    const [dir] = await h.app.runtime.adminQuery({ projectId: h.projectId, slug }, "SHOW data_directory");
    const postmaster = Number(readFileSync(`${dir!["data_directory"]}/postmaster.pid`, "utf8").split("\n")[0]);
    // SIGSTOP: the server accepts connections into its backlog and never answers them.
    process.kill(postmaster, "SIGSTOP");
    try {
      const body = await usage();
      expect(body.usage).toBeUndefined();
      expect(body.usageUnavailable).toMatch(/did not report its figures within 2000 ms/);
      const scraped = await scrapeWhen((text) => sample(text, "sota_database_up", `project_id="${h.projectId}"`) === 0);
      expect(sample(scraped, "sota_database_up", `project_id="${h.projectId}"`)).toBe(0);
    } finally {
      process.kill(postmaster, "SIGCONT");
    }
    const back = await usageWhen(() => true);
    expect(back.sizeBytes).toBeDefined();
  });

  it("is described without usage, says why, and is down in /metrics", async () => {
    // Up first (the scrape's figures are cached a few seconds), so the 0 below is this test's.
    await scrapeWhen((text) => sample(text, "sota_database_up", `project_id="${h.projectId}"`) === 1);
    await h.app.runtime.remove({ projectId: h.projectId, slug: (await usage()).database.slug }, { keepData: true });
    const body = await usage();
    expect(body.database.state).toBe("DATABASE_STATE_READY");
    expect(body.usage).toBeUndefined();
    expect(body.usageUnavailable).toMatch(/not running|ensure/i);
    const scraped = await scrapeWhen((text) => sample(text, "sota_database_up", `project_id="${h.projectId}"`) === 0);
    expect(sample(scraped, "sota_database_up", `project_id="${h.projectId}"`)).toBe(0);
    expect(sample(scraped, "sota_database_size_bytes", `project_id="${h.projectId}"`)).toBeUndefined();

    // Ensure brings it back, and its figures with it.
    expect((await rest(`/v1/projects/${h.projectId}/database`, { method: "POST", token: h.tokens.deployer })).status).toBe(200);
    expect((await usage()).usage.sizeBytes).toBeDefined();
  });
});

describe("the alert rules and the dashboard in deploy/", () => {
  it("use only metrics this service exports", async () => {
    const exported = new Set([...(await scrape()).matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1]));
    const files = ["deploy/prometheus/sota-db-alerts.yml", "deploy/grafana/sota-db-dashboard.json"];
    for (const file of files) {
      const text = readFileSync(new URL(`../../${file}`, import.meta.url), "utf8");
      const used = new Set([...text.matchAll(/\bsota_[a-z_]+/g)].map((match) => match[0]));
      expect(used.size, file).toBeGreaterThan(5);
      for (const name of used) expect(exported, `${file} uses ${name}`).toContain(name);
    }
  });
});
