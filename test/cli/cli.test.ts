// The sota-db CLI as a human runs it: `node bin/sota-db.js …` as a child
// process against the real service (real PostgreSQL and PgBouncer on the
// process runtime). Checks what it prints, its exit codes and messages, that
// --json parses, that a download's checksum holds, and that no password
// appears in the output of any command but url and rotate.
import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/server/tokens.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { commitThenTime, windowOf } from "../support/pitr-api.js";

const BIN = join(import.meta.dirname, "../../bin/sota-db.js");

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let h: Harness;
const projectId = randomUUID();
const workDir = mkdtempSync(join(tmpdir(), "sota-cli-"));
/** Output of every command that was not asked for a URL: none may hold a password. */
const quietOutputs: string[] = [];
const passwords: string[] = [];

function sotaDb(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: workDir, env: { ...process.env, SOTA_URL: h.app.url, SOTA_TOKEN: h.tokens.deployer, ...env }, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A command that must not print a password: its output is kept for the final check. */
async function quiet(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const run = await sotaDb(args, env);
  quietOutputs.push(`$ sota-db ${args.join(" ")}\n${run.stdout}${run.stderr}`);
  return run;
}

function passwordOf(url: string): string {
  return decodeURIComponent(new URL(url).password);
}

async function query(url: string, sql: string): Promise<any[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(88) });
});

afterAll(async () => {
  await h?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

describe("sota-db CLI against a running service", () => {
  let url = "";
  let backupId = "";
  let backupSha = "";

  it("ensure provisions the database and prints it as a table; again, it says it was already there", async () => {
    const first = await quiet(["ensure", projectId, "--slug", "cli-shop"]);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^slug:\s+cli-shop$/m);
    expect(first.stdout).toMatch(/^state:\s+ready$/m);
    expect(first.stdout).toMatch(/^created:\s+yes/m);
    const again = await quiet(["--json", "ensure", projectId]);
    expect(again.code).toBe(0);
    const parsed = JSON.parse(again.stdout);
    expect(parsed).toMatchObject({ database: { projectId, slug: "cli-shop", state: "DATABASE_STATE_READY" } });
    expect(parsed.created).toBeUndefined();
  });

  it("get describes the database and its live figures", async () => {
    const run = await quiet(["get", projectId]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^user:\s+app_cli-shop$/m);
    expect(run.stdout).toMatch(/^size:\s+\d/m);
    const parsed = JSON.parse((await quiet(["get", projectId, "--json"])).stdout);
    expect(parsed.database.slug).toBe("cli-shop");
    expect(Number(parsed.usage.sizeBytes)).toBeGreaterThan(0);
  });

  it("url prints the DATABASE_URL alone (a working one), --session the session URL", async () => {
    const run = await sotaDb(["url", projectId]);
    expect(run.code).toBe(0);
    url = run.stdout.trim();
    expect(url).toMatch(/^postgresql:\/\/app_cli-shop:[0-9a-f]{32}@/);
    passwords.push(passwordOf(url));
    await query(url, "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2)");
    const session = (await sotaDb(["url", "--session", projectId])).stdout.trim();
    expect(session).toMatch(/\/cli-shop_session\?/);
    expect(passwordOf(session)).toBe(passwordOf(url));
  });

  it("backups create --wait, list, verify", async () => {
    const created = await quiet(["--json", "backups", "create", projectId, "--wait"]);
    expect(created.code).toBe(0);
    const backup = JSON.parse(created.stdout).backup;
    expect(backup).toMatchObject({ projectId, kind: "BACKUP_KIND_MANUAL", state: "BACKUP_STATE_SUCCEEDED" });
    backupId = backup.id;
    backupSha = backup.sha256;

    const list = await quiet(["backups", "list", projectId]);
    expect(list.code).toBe(0);
    expect(list.stdout.split("\n")[0]).toMatch(/^ID\s+KIND\s+FORMAT\s+STATE\s+SIZE\s+VERIFIED\s+STARTED\s+EXPIRES\s+OFFSITE$/);
    expect(list.stdout).toMatch(new RegExp(`^${backupId}\\s+manual\\s+dump\\s+succeeded\\s.*\\sdisabled$`, "m"));
    expect(list.stdout).toMatch(/^recovery window:\s+\S/m);
    expect(JSON.parse((await quiet(["backups", "list", projectId, "--json"])).stdout).backups[0].id).toBe(backupId);

    const verified = await quiet(["backups", "verify", projectId, backupId]);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/^verified:\s+passed$/m);
  });

  it("backups download writes the file, checks its sha256, and leaves no partial file", async () => {
    const run = await quiet(["backups", "download", projectId, backupId, "-o", "backup.sql.gz"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`${backupSha} (checked)`);
    const written = readFileSync(join(workDir, "backup.sql.gz"));
    expect(createHash("sha256").update(written).digest("hex")).toBe(backupSha);
    // Without -o: the server's file name, in the current directory.
    const named = await quiet(["--json", "backups", "download", projectId, backupId]);
    expect(named.code).toBe(0);
    const result = JSON.parse(named.stdout);
    expect(result).toMatchObject({ file: `cli-shop-${backupId}.sql.gz`, sha256: backupSha });
    expect(existsSync(join(workDir, result.file))).toBe(true);
    expect(readdirSync(workDir).filter((name) => name.endsWith(".part"))).toEqual([]);
  });

  it("backups restore brings the data back and names the safety backup", async () => {
    await query(url, "INSERT INTO orders VALUES (3)");
    const run = await quiet(["backups", "restore", projectId, backupId]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^backup:\\s+${backupId}$`, "m"));
    expect(run.stdout).toMatch(/^kind:\s+safety$/m);
    expect((await query(url, "SELECT count(*)::int AS n FROM orders"))[0].n).toBe(2);
  });

  it("get and backups list show the recovery window; backups restore --to brings the database back to that second", async () => {
    await windowOf(h, projectId);
    expect((await quiet(["get", projectId])).stdout).toMatch(/^recovery window:\s+\d{4}-\d{2}-\d{2} \S+ to now \(WAL streaming/m);
    expect((await quiet(["backups", "list", projectId])).stdout).toMatch(/^\S+\s+scheduled\s+base\s+succeeded\s/m);
    await query(url, "INSERT INTO orders VALUES (10)");
    const between = await commitThenTime(url, "SELECT 1");
    await query(url, "INSERT INTO orders VALUES (11)");
    const run = await quiet(["backups", "restore", projectId, "--to", between.toISOString()]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^restored to:\s+\d{4}-/m);
    expect(run.stdout).toMatch(/^format:\s+base$/m);
    expect(run.stdout).toMatch(/^kind:\s+safety$/m);
    expect((await query(url, "SELECT id FROM orders ORDER BY id")).map((row) => row.id)).toEqual([1, 2, 10]);
  });

  it("clone --from makes another project's database from this one's data", async () => {
    const target = randomUUID();
    const run = await quiet(["clone", target, "--from", projectId, "--slug", "cli-clone"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^slug:\s+cli-clone$/m);
    expect(run.stdout).toMatch(new RegExp(`^cloned from:\\s+${projectId}$`, "m"));
    const cloneUrl = (await h.app.service.connection(target)).url;
    expect(run.stdout).not.toContain(passwordOf(cloneUrl));
    expect((await query(cloneUrl, "SELECT id FROM orders ORDER BY id")).map((row) => row.id)).toEqual([1, 2, 10]);
    // A project token may not clone.
    const refused = await quiet(["clone", randomUUID(), "--from", projectId], { SOTA_TOKEN: h.tokens.project });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^sota-db: permission_denied: /);
  });

  it("restore and clone usage errors exit 2 and send nothing: no backup and no --to, a time that is not RFC 3339, no --from", async () => {
    const before = (await quiet(["--json", "backups", "list", projectId])).stdout;
    for (const args of [
      ["backups", "restore", projectId],
      ["backups", "restore", projectId, "--to", "yesterday"],
      ["backups", "restore", projectId, "--to", "2026-11-30 14:05"],
      ["clone", randomUUID(), "--from", projectId, "--at", "14:05"],
      ["clone", randomUUID()],
    ]) {
      const run = await quiet(args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stdout).toBe("");
    }
    expect(JSON.parse((await quiet(["--json", "backups", "list", projectId])).stdout).backups).toEqual(JSON.parse(before).backups);
  });

  it("fails with the server's code and message and exit code 1", async () => {
    const badToken = await quiet(["get", projectId], { SOTA_TOKEN: "not-a-token" });
    expect(badToken.code).toBe(1);
    expect(badToken.stdout).toBe("");
    expect(badToken.stderr).toMatch(/^sota-db: unauthenticated: /);
    const projectToken = await quiet(["url", projectId], { SOTA_TOKEN: h.tokens.project });
    expect(projectToken.code).toBe(1);
    expect(projectToken.stderr).toMatch(/^sota-db: permission_denied: /);
    const missing = await quiet(["backups", "download", projectId, "20200101T000000Z-nothing", "-o", "missing.gz"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^sota-db: (not_found|invalid_argument): /);
    expect(existsSync(join(workDir, "missing.gz"))).toBe(false);
    const badDownloadToken = await quiet(["backups", "download", projectId, backupId, "-o", "x.gz"], { SOTA_TOKEN: "not-a-token" });
    expect(badDownloadToken.code).toBe(1);
    expect(badDownloadToken.stderr).toMatch(/^sota-db: unauthenticated: /);
  });

  it("usage errors exit 2 and send nothing", async () => {
    expect((await quiet(["get", projectId], { SOTA_TOKEN: "" })).code).toBe(2);
    expect((await quiet(["get"])).code).toBe(2);
    expect((await quiet(["frobnicate"])).code).toBe(2);
    const unconfirmed = await quiet(["delete", projectId]);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain("--yes");
    expect((await quiet(["get", projectId])).stdout).toMatch(/^state:\s+ready$/m);
  });

  it("rotate prints a new working DATABASE_URL; the old password stops working", async () => {
    const run = await sotaDb(["rotate", projectId]);
    expect(run.code).toBe(0);
    const rotated = run.stdout.trim();
    expect(passwordOf(rotated)).not.toBe(passwordOf(url));
    passwords.push(passwordOf(rotated));
    expect((await query(rotated, "SELECT 1 AS one"))[0].one).toBe(1);
    await expect(query(url, "SELECT 1")).rejects.toThrow();
    url = rotated;
  });

  it("delete --yes takes a final backup and removes the database", async () => {
    const run = await quiet(["delete", projectId, "--yes"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^state:\s+deleted$/m);
    expect(run.stdout).toMatch(/^kind:\s+final$/m);
    expect(JSON.parse((await quiet(["get", projectId, "--json"])).stdout).database.state).toBe("DATABASE_STATE_DELETED");
  });

  it("no command but url and rotate printed a password, a URL or a token", () => {
    expect(passwords.length).toBe(2);
    const all = quietOutputs.join("\n");
    for (const secret of [...passwords, ...Object.values(h.tokens)]) expect(all).not.toContain(secret);
    expect(all).not.toContain("postgresql://");
  });
});

describe("sota-db offline helpers", () => {
  it("runs as `npx sota-db` from the repo (the package.json bin)", async () => {
    const help = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile("npx", ["--no-install", "sota-db", "--help"], { cwd: join(import.meta.dirname, "../.."), timeout: 60_000 }, (error, stdout) =>
        resolve({ code: error ? -1 : 0, stdout }),
      );
    });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: sota-db");
    expect(help.stdout).toMatch(/^\s+backups\s/m);
  });

  it("token new prints the token once and a tokens-file line with its sha256", async () => {
    const run = await sotaDb(["token", "new", "--role", "project", "--project", projectId.toUpperCase(), "--name", "ci"]);
    expect(run.code).toBe(0);
    const [token, line] = run.stdout.trim().split("\n");
    expect(token).toMatch(/^sota_[A-Za-z0-9_-]{43}$/);
    expect(JSON.parse(line!)).toEqual({ name: "ci", sha256: hashToken(token!), role: "project", projectId });
    expect(run.stderr).toContain("SOTA_TOKENS_FILE");
    const json = JSON.parse((await sotaDb(["--json", "token", "new", "--role", "metrics"])).stdout);
    expect(json.entry).toEqual({ name: "metrics", sha256: hashToken(json.token), role: "metrics" });
  });

  it("token new refuses a project token without a project, and an unknown role", async () => {
    expect((await sotaDb(["token", "new", "--role", "project"])).code).toBe(2);
    expect((await sotaDb(["token", "new", "--role", "root"])).code).toBe(2);
    expect((await sotaDb(["token", "new", "--role", "admin", "--project", projectId])).code).toBe(2);
  });

  it("key new prints base64 of 32 random bytes", async () => {
    const first = (await sotaDb(["key", "new"])).stdout.trim();
    expect(Buffer.from(first, "base64")).toHaveLength(32);
    expect((await sotaDb(["key", "new"])).stdout.trim()).not.toBe(first);
  });
});
