// `sota-db offsite recover --all`, as an operator runs it on a new host: the
// CLI as a child process (node bin/sota-db.js), the bucket a real
// S3-compatible server, the service real (process runtime). Host A serves two
// projects until their data is in the bucket and is lost whole; on host B
// the command lists the projects from the bucket (no master key), Ensures
// each through the API, and prints what became of them: both come back with
// their very same DATABASE_URLs and rows. Run again, nothing is made twice; a
// project the bucket does not hold is reported failed (exit 1), never made.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Harness } from "../support/app-harness.js";
import { startDrBed, type DrBed } from "../support/dr-hosts.js";
import { rest } from "../support/pitr-api.js";
import { queryUrl } from "../support/url-query.js";

const BIN = new URL("../../bin/sota-db.js", import.meta.url).pathname;

let bed: DrBed;
let a: Harness;
let b: Harness;
const projects = [
  { projectId: randomUUID(), slug: "cli-dr-one", url: "" },
  { projectId: randomUUID(), slug: "cli-dr-two", url: "" },
];

beforeAll(async () => {
  bed = await startDrBed("cli-dr", 37);
  a = await bed.host();
});

afterAll(async () => {
  await bed?.close();
});

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The CLI with only what an operator gives it: the API's URL, a token, and the bucket's settings. */
function sotaDb(args: string[]): Promise<Run> {
  const env = {
    PATH: process.env["PATH"] ?? "",
    SOTA_URL: b.app.url,
    SOTA_TOKEN: b.tokens.deployer,
    ...bed.s3.env({ SOTA_BACKUP_S3_PREFIX: "cli-dr" }),
  };
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 300_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

describe("sota-db offsite recover --all", () => {
  it("host A: two databases whose base backups and WAL reach the bucket", async () => {
    const host = a;
    for (const [index, project] of projects.entries()) {
      const path = `/v1/projects/${project.projectId}/database`;
      expect((await rest(host, path, { method: "POST", token: host.tokens.deployer, body: { slug: project.slug } })).status).toBe(200);
      project.url = (await host.app.service.connection(project.projectId)).url;
      await queryUrl(project.url, `CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, ${10 * (index + 1)})`);
      await bed.untilCopied(host, project);
    }
    await bed.lose(a);
  });

  it("on host B, brings both back through Ensure: a table of what happened, exit 0, the same URLs and rows", async () => {
    b = await bed.host();
    const run = await sotaDb(["offsite", "recover", "--all"]);
    expect(run.stderr).not.toContain("sota-db:");
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^PROJECT\s+SLUG\s+OUTCOME$/);
    for (const project of projects) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${project.projectId}\\s+${project.slug}\\s+recovered$`)));
    expect(lines).toHaveLength(3);
    for (const [index, project] of projects.entries()) {
      expect((await b.app.service.connection(project.projectId)).url).toBe(project.url);
      expect((await queryUrl(project.url, "SELECT count(*)::int AS n FROM items")).rows[0].n).toBe(10 * (index + 1));
    }
    // What the operator reads names no secret.
    for (const project of projects) expect(run.stdout).not.toContain(new URL(project.url).password);
  });

  it("run again, reports both already there; --json says the same", async () => {
    const run = await sotaDb(["--json", "offsite", "recover", "--all"]);
    expect(run.code).toBe(0);
    const outcomes = JSON.parse(run.stdout) as { projectId: string; outcome: string }[];
    expect(outcomes.map((outcome) => outcome.outcome)).toEqual(["already there", "already there"]);
    expect(new Set(outcomes.map((outcome) => outcome.projectId))).toEqual(new Set(projects.map((project) => project.projectId)));
  });

  it("a named project the bucket does not hold is reported failed and not made; exit 1", async () => {
    const stranger = randomUUID();
    const run = await sotaDb(["offsite", "recover", projects[0]!.projectId, stranger]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(new RegExp(`${projects[0]!.projectId}\\s+${projects[0]!.slug}\\s+already there`));
    expect(run.stdout).toMatch(new RegExp(`${stranger}\\s+failed: the bucket holds no manifest of this project`));
    expect(run.stderr).toMatch(/1 of 2 projects were not recovered/);
    expect((await rest(b!, `/v1/projects/${stranger}/database`, { token: b.tokens.deployer })).status).toBe(404);
  });

  it("refuses usage errors with exit 2 before calling anything", async () => {
    expect((await sotaDb(["offsite", "recover"])).code).toBe(2);
    expect((await sotaDb(["offsite", "recover", "--all", projects[0]!.projectId])).code).toBe(2);
    expect((await sotaDb(["offsite", "recover", "not-a-uuid"])).code).toBe(2);
    expect((await sotaDb(["offsite", "recover", "--all", "--concurrency", "0"])).code).toBe(2);
  });
});
