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
import { loseHost, offHostSecrets, startHost, type OffHost } from "../support/dr-hosts.js";
import { eventually, rest } from "../support/pitr-api.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { startS3Server, type S3Server } from "../support/s3-server.js";
import { queryUrl } from "../support/url-query.js";

const BIN = new URL("../../bin/sota-db.js", import.meta.url).pathname;

let s3: S3Server;
let offHost: OffHost;
let a: Harness | undefined;
let b: Harness | undefined;
const projects = [
  { projectId: randomUUID(), slug: "cli-dr-one", url: "" },
  { projectId: randomUUID(), slug: "cli-dr-two", url: "" },
];

beforeAll(async () => {
  s3 = await startS3Server();
  offHost = offHostSecrets({
    ...s3.env({ SOTA_BACKUP_S3_SYNC_SECONDS: "1", SOTA_BACKUP_S3_PREFIX: "cli-dr" }),
    SOTA_POOLER_PORTS: poolerPortsSetting(37),
    SOTA_BACKUP_MIN_FREE: "0",
  });
  a = await startHost(offHost);
});

afterAll(async () => {
  await a?.stop().catch(() => undefined);
  await b?.stop();
  await s3?.destroy();
  offHost?.remove();
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
    SOTA_URL: b!.app.url,
    SOTA_TOKEN: b!.tokens.deployer,
    ...s3.env({ SOTA_BACKUP_S3_PREFIX: "cli-dr" }),
  };
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 300_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

describe("sota-db offsite recover --all", () => {
  it("host A: two databases whose base backups and WAL reach the bucket", async () => {
    const host = a!;
    for (const [index, project] of projects.entries()) {
      const path = `/v1/projects/${project.projectId}/database`;
      expect((await rest(host, path, { method: "POST", token: host.tokens.deployer, body: { slug: project.slug } })).status).toBe(200);
      project.url = (await host.app.service.connection(project.projectId)).url;
      await queryUrl(project.url, `CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, ${10 * (index + 1)})`);
      await eventually(`the base backup of ${project.slug} copied off-host`, async () => {
        const { backups } = (await rest(host, `${path}/backups`, { token: host.tokens.deployer })).json;
        return backups.some((backup: any) => backup.format === "BACKUP_FORMAT_BASE" && backup.offsite?.state === "OFFSITE_STATE_COPIED") ? true : undefined;
      });
      const flushed = await host.app.runtime.pitr!.flushWal({ projectId: project.projectId, slug: project.slug });
      await eventually(`the WAL of ${project.slug} copied off-host`, async () =>
        (await host.app.store.listOffsiteWal(project.projectId)).some((record) => record.copiedAt > flushed) ? true : undefined,
      );
    }
    const lost = a!;
    a = undefined;
    await loseHost(lost);
  });

  it("on host B, brings both back through Ensure: a table of what happened, exit 0, the same URLs and rows", async () => {
    b = await startHost(offHost);
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
    expect((await rest(b!, `/v1/projects/${stranger}/database`, { token: b!.tokens.deployer })).status).toBe(404);
  });

  it("refuses usage errors with exit 2 before calling anything", async () => {
    expect((await sotaDb(["offsite", "recover"])).code).toBe(2);
    expect((await sotaDb(["offsite", "recover", "--all", projects[0]!.projectId])).code).toBe(2);
    expect((await sotaDb(["offsite", "recover", "not-a-uuid"])).code).toBe(2);
    expect((await sotaDb(["offsite", "recover", "--all", "--concurrency", "0"])).code).toBe(2);
  });
});
