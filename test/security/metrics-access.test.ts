// Item 9 of the tenant-isolation issue: /metrics is for the operator's
// Prometheus, not a directory of projects. Without a token: 401; a project
// token: 403; an admin token or a token with the "metrics" role: the
// metrics. No project id is shown to anyone else, whatever the path.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { hashToken } from "../../src/server/tokens.js";

let h: Harness;
const metricsToken = `met_${randomBytes(24).toString("hex")}`;

beforeAll(async () => {
  h = await startHarness();
  // A database and a backup, so that per-project series exist.
  const ensured = await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, { method: "POST", headers: bearer(h.tokens.project) });
  expect(ensured.status).toBe(200);
  const backup = await fetch(`${h.app.url}/v1/projects/${h.projectId}/database/backups?wait=true`, { method: "POST", headers: bearer(h.tokens.project) });
  expect(backup.status).toBe(200);
});

afterAll(async () => {
  await h?.stop();
});

function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

async function scrape(headers: Record<string, string> = {}): Promise<{ status: number; body: string; authenticate: string | null }> {
  const response = await fetch(`${h.app.url}/metrics`, { headers });
  return { status: response.status, body: await response.text(), authenticate: response.headers.get("www-authenticate") };
}

describe("/metrics", () => {
  it("refuses a caller without a token, and says how to authenticate", async () => {
    const answer = await scrape();
    expect(answer.status).toBe(401);
    expect(answer.authenticate).toMatch(/^Bearer/);
    expect(answer.body).not.toContain(h.projectId);
    expect(answer.body).not.toContain("sota_");
  });

  it("refuses an unknown token", async () => {
    const answer = await scrape(bearer("sota_not-a-real-token-at-all"));
    expect(answer.status).toBe(401);
    expect(answer.body).not.toContain(h.projectId);
  });

  it("refuses a project token: a tenant does not get a list of the other tenants", async () => {
    for (const token of [h.tokens.project, h.tokens.other]) {
      const answer = await scrape(bearer(token));
      expect(answer.status).toBe(403);
      expect(answer.body).not.toContain(h.projectId);
      expect(answer.body).not.toContain("sota_");
    }
  });

  it("shows no project id over HTTP/2 or to a HEAD request without a token either", async () => {
    const head = await fetch(`${h.app.url}/metrics`, { method: "HEAD" });
    expect(head.status).not.toBe(200);
    const { connect } = await import("node:http2");
    const session = connect(h.app.url);
    try {
      const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const stream = session.request({ ":path": "/metrics" });
        let status = 0;
        let text = "";
        stream.on("response", (headers) => (status = Number(headers[":status"])));
        stream.on("data", (chunk: Buffer) => (text += chunk.toString()));
        stream.on("end", () => resolve({ status, text }));
        stream.on("error", reject);
      });
      expect(body.status).toBe(401);
      expect(body.text).not.toContain(h.projectId);
    } finally {
      session.close();
    }
  });

  it("serves the metrics to an admin token", async () => {
    const answer = await scrape(bearer(h.tokens.admin));
    expect(answer.status).toBe(200);
    expect(answer.body).toMatch(/sota_rpc_requests_total\{method="Ensure",code="ok"\} \d+/);
    expect(answer.body).toContain(`sota_backup_last_success_timestamp_seconds{project_id="${h.projectId}"}`);
    for (const secret of Object.values(h.tokens)) expect(answer.body).not.toContain(secret);
  });

  it("serves the metrics to a token with the metrics role, which may call nothing else", async () => {
    // A dedicated scrape token, as an operator adds it to the tokens file.
    const file = h.env["SOTA_TOKENS_FILE"]!;
    const entries = JSON.parse(readFileSync(file, "utf8")) as unknown[];
    writeFileSync(file, JSON.stringify([...entries, { name: "prometheus", sha256: hashToken(metricsToken), role: "metrics" }]));
    await h.restart();
    const answer = await scrape(bearer(metricsToken));
    expect(answer.status).toBe(200);
    expect(answer.body).toContain(`sota_backup_last_success_timestamp_seconds{project_id="${h.projectId}"}`);
    expect(answer.body).not.toContain(metricsToken);
    const described = await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, { headers: bearer(metricsToken) });
    expect(described.status).toBe(403);
    expect(await described.text()).not.toContain(h.projectId.replace(/-/g, ""));
  });
});
