// The whole service on the PostgreSQL state store (SOTA_STATE_URL) with the
// process runtime: Ensure (REST), the connection, a restart that brings the database
// back with the same URL, backups recorded there, and the state URL kept secret.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PostgresStore } from "../../src/store/postgres-store.js";
import { startPostgresStateHarness, type PostgresStateHarness } from "../support/postgres-state-harness.js";
import type { Harness } from "../support/app-harness.js";
import { queryUrl } from "../support/url-query.js";

let bed: PostgresStateHarness;
let stateUrl: string;
let h: Harness;

beforeAll(async () => {
  bed = await startPostgresStateHarness(50);
  ({ stateUrl, h } = bed);
});

afterAll(async () => {
  await bed?.stop();
});

async function rest(path: string, method = "GET"): Promise<Response> {
  return fetch(`${h.app.url}${path}`, { method, headers: { authorization: `Bearer ${h.tokens.admin}` } });
}


describe("the service on the PostgreSQL state store", () => {
  it("keeps its databases there, and brings them back after a restart with the same URL", async () => {
    expect(h.app.store).toBeInstanceOf(PostgresStore);
    expect((await rest(`/v1/projects/${h.projectId}/database`, "POST")).status).toBe(200);
    const databaseUrl = (await h.app.service.connection(h.projectId)).url;
    await queryUrl(databaseUrl, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)");

    const rows = await queryUrl(stateUrl, "SELECT slug, state, sealed_url, sealed_password FROM sota.databases");
    expect(rows.rows).toMatchObject([{ state: "ready" }]);
    // Sealed in the shared state, as in the file: neither the URL nor its password in clear.
    const password = new URL(databaseUrl).password;
    expect(JSON.stringify(rows.rows)).not.toContain(password);
    expect((await queryUrl(stateUrl, "SELECT count(*)::int AS n FROM sota.pooler_ports")).rows).toEqual([{ n: 1 }]);

    await h.restart();
    expect((await queryUrl(databaseUrl, "SELECT v FROM kept")).rows).toEqual([{ v: 7 }]);
    expect((await h.app.service.connection(h.projectId)).url).toBe(databaseUrl);
  });

  it("records backups there", async () => {
    const response = await rest(`/v1/projects/${h.projectId}/database/backups?wait=true`, "POST");
    expect(response.status).toBe(200);
    // Dumps: the database's base backups (taken on their own since it was first ready) are there too.
    const { rows } = await queryUrl(stateUrl, "SELECT kind, state FROM sota.backups WHERE format = 'dump'");
    expect(rows).toEqual([{ kind: "manual", state: "succeeded" }]);
    const base = await queryUrl(stateUrl, "SELECT count(*)::int AS n FROM sota.backups WHERE format = 'base'");
    expect(base.rows[0].n).toBeLessThanOrEqual(1);
  });

  it("reports the store ready and counts databases from it", async () => {
    expect(await (await rest("/readyz")).json()).toMatchObject({ status: "ready", checks: { store: { ok: true } } });
    expect(await (await rest("/metrics")).text()).toMatch(/sota_databases\{state="ready"\} 1/);
  });

  it("never writes the state URL or its password to the log", () => {
    const log = h.logs.join("");
    expect(log).toContain("sota-db listening");
    expect(log).not.toContain(stateUrl);
    expect(log).not.toContain(new URL(stateUrl).password);
  });
});
