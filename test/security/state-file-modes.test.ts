// Item 8 of the tenant-isolation issue: another OS user on the host (a
// tenant's PostgreSQL runs as one) reads nothing under the data dir that holds
// state, keys, tokens or backups. The service runs for real, with a database
// and a backup; then every such file is checked by its mode and by trying to
// read it as the unprivileged user "nobody". A data dir left with loose modes
// by an older version is fixed at the next start.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";

let h: Harness;
/** Subtrees that belong to the runtime's children (their own users and modes). */
const RUNTIME_DIRS = new Set(["instances", "templates", "warm", "spares"]);

beforeAll(async () => {
  h = await startHarness();
  const headers = { authorization: `Bearer ${h.tokens.project}` };
  expect((await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, { method: "POST", headers })).status).toBe(200);
  expect((await fetch(`${h.app.url}/v1/projects/${h.projectId}/database/backups?wait=true`, { method: "POST", headers })).status).toBe(200);
});

afterAll(async () => {
  await h?.stop();
});

/** Every file and directory of the service's own state: the data dir minus the runtime's subtrees. */
function stateEntries(dir = h.dataDir): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (dir === h.dataDir && RUNTIME_DIRS.has(name)) continue;
    found.push(path);
    if (lstatSync(path).isDirectory()) found.push(...stateEntries(path));
  }
  return found;
}

function readableByNobody(path: string): boolean {
  const result = spawnSync("runuser", ["-u", "nobody", "--", "cat", path], { stdio: ["ignore", "ignore", "ignore"] });
  return result.status === 0;
}

function listableByNobody(path: string): boolean {
  return spawnSync("runuser", ["-u", "nobody", "--", "ls", path], { stdio: ["ignore", "ignore", "ignore"] }).status === 0;
}

const canRunAsNobody = (() => {
  try {
    execFileSync("runuser", ["-u", "nobody", "--", "true"]);
    return true;
  } catch {
    return false;
  }
})();

function checkNothingReadable(): void {
  const entries = stateEntries();
  const names = entries.map((path) => relative(h.dataDir, path));
  // The files this check is about are really there.
  expect(names).toEqual(expect.arrayContaining(["state.db", "state.db-wal", "state.db-shm", "master.key", "tokens.json", "backups"]));
  expect(names.some((name) => name.startsWith("backups/") && name.endsWith(".sql.gz"))).toBe(true);

  // The data dir itself: others may pass through (the runtime's children live below), never list or write.
  expect(statSync(h.dataDir).mode & 0o077 & ~0o011).toBe(0);
  if (canRunAsNobody) expect(listableByNobody(h.dataDir)).toBe(false);

  const loose = entries.filter((path) => (lstatSync(path).mode & 0o077) !== 0).map((path) => relative(h.dataDir, path));
  expect(loose).toEqual([]);
  if (canRunAsNobody) {
    const read = entries.filter((path) => lstatSync(path).isFile() && readableByNobody(path)).map((path) => relative(h.dataDir, path));
    expect(read).toEqual([]);
  }
}

describe("files holding state, keys, tokens and backups", () => {
  it("are readable by no other OS user", () => {
    checkNothingReadable();
  });

  it("are made private at start when an older version left them open", async () => {
    await h.app.close();
    // What the embedded default left behind before: 0755 dirs, 0644 files.
    chmodSync(h.dataDir, 0o755);
    for (const path of stateEntries()) chmodSync(path, lstatSync(path).isDirectory() ? 0o755 : 0o644);
    await h.start();
    expect(existsSync(join(h.dataDir, "state.db"))).toBe(true);
    // The service still works with the fixed modes: its database answers.
    const response = await fetch(`${h.app.url}/v1/projects/${h.projectId}/database`, { headers: { authorization: `Bearer ${h.tokens.project}` } });
    expect(response.status).toBe(200);
    checkNothingReadable();
  });
});
