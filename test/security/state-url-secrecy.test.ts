// The PostgreSQL state store's URL (SOTA_STATE_URL) holds the password of the
// service's whole state. The attack: with the state store down, anyone asks
// GET /readyz (no token) and a tenant calls its RPCs, hoping an error repeats
// where the store lives or how the service logs in.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPostgresStateHarness, type PostgresStateHarness } from "../support/postgres-state-harness.js";
import type { Harness } from "../support/app-harness.js";

let bed: PostgresStateHarness;
let stateUrl: string;
let h: Harness;

beforeAll(async () => {
  bed = await startPostgresStateHarness(51);
  ({ stateUrl, h } = bed);
});

afterAll(async () => {
  await bed?.stop();
});

describe("the state URL", () => {
  it("is in no answer while the state store is down: not /readyz's, not a tenant's", async () => {
    const ready = await fetch(`${h.app.url}/readyz`);
    expect(ready.status).toBe(200);
    // The state store goes away: its server stops, every connection is cut.
    const admin = new pg.Client({ connectionString: stateUrl });
    await admin.connect();
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database()");
    await admin.end();
    await bed.cluster.stop();

    const url = new URL(stateUrl);
    const leaks = [stateUrl, url.password, `${url.hostname}:${url.port}`, url.pathname.slice(1)];
    const down = await fetch(`${h.app.url}/readyz`);
    expect(down.status).toBe(503);
    const body = await down.text();
    for (const leak of leaks) expect(body).not.toContain(leak);
    expect(body).toContain("the PostgreSQL state store does not answer");

    const tenant = await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, {
      method: "POST",
      headers: { authorization: `Bearer ${h.tokens.project}` },
    });
    expect(tenant.status).toBeGreaterThanOrEqual(500);
    const answer = await tenant.text();
    for (const leak of leaks) expect(answer).not.toContain(leak);
    // The log is the operator's, but the password stays out of it too.
    expect(h.logs.join("")).not.toContain(url.password);
  });
});
