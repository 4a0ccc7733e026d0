// Several services sharing one PostgreSQL state store (SOTA_STATE_URL), as
// operators run them (`npm start`'s command, kill -9 included): with the
// Docker runtime on one engine they serve the API together, Ensure of one
// project through both gives one database and one password, one of them leads
// the backup schedule and another takes over when it dies, and every cron
// slot is run exactly once; a restore through both at once runs one after the other. With the process runtime a second one is refused.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/server/tokens.js";
import { removeDataDir } from "../support/data-dir-cleanup.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine, serviceObjectsCleanup, TEST_PGBOUNCER_IMAGE, TEST_POSTGRES_IMAGE } from "../support/docker-test-bed.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { REPO_ROOT, serviceCommand } from "../support/service-command.js";
import { startStatePostgres, type StatePostgres } from "../support/state-postgres.js";

const engine = await probeDockerEngine();
const required = process.env["SOTA_REQUIRE_DOCKER"] === "1";
const { command: NODE, args: START_ARGS } = serviceCommand();
/** A slot every 5 s: a leader change happens between slots, not once a day. */
const SCHEDULE = "*/5 * * * * *";
const SLOT_MS = 5_000;

const dirs: string[] = [];
const running: Replica[] = [];
let cluster: StatePostgres;
const admin = `adm_${randomBytes(24).toString("hex")}`;
/** Shared by every replica: tokens, master key and backup directory are the operator's to share. */
let shared: Record<string, string>;

interface Replica {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
  url?: string;
}

function dir(prefix: string): string {
  const path = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(path, 0o755);
  dirs.push(path);
  return path;
}

function start(env: Record<string, string>): Replica {
  const child = spawn(NODE, START_ARGS, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...shared, SOTA_DATA_DIR: dir("sota-replica-"), SOTA_LISTEN: "127.0.0.1:0", SOTA_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const replica: Replica = { child, output: () => output, exited };
  running.push(replica);
  return replica;
}

async function listening(replica: Replica, timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = replica.output().match(/"address":"(127\.0\.0\.1:\d+)"[^\n]*"msg":"sota-db listening"/);
    if (match) return (replica.url = `http://${match[1]}`);
    if (replica.child.exitCode !== null) throw new Error(`exited early: ${replica.output()}`);
    if (Date.now() > deadline) throw new Error(`not listening in time: ${replica.output()}`);
    await sleep(200);
  }
}

async function call(replica: Replica, method: string, body: object): Promise<Response> {
  return fetch(`${replica.url}/sota.database.v1.DatabaseService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
    body: JSON.stringify(body),
  });
}

/** The replica's sota_scheduler_leader, or undefined when it does not answer. */
async function leaderGauge(replica: Replica): Promise<number | undefined> {
  try {
    const response = await fetch(`${replica.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } });
    const match = (await response.text()).match(/^sota_scheduler_leader (\d+)$/m);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function waitUntil<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

beforeAll(async () => {
  cluster = await startStatePostgres();
  const tokensFile = join(dir("sota-replica-tokens-"), "tokens.json");
  writeFileSync(tokensFile, JSON.stringify([{ name: "ops", sha256: hashToken(admin), role: "admin" }]));
  shared = {
    SOTA_TOKENS_FILE: tokensFile,
    SOTA_MASTER_KEY: randomBytes(32).toString("base64"),
    SOTA_BACKUP_DIR: dir("sota-replica-backups-"),
  };
});

afterAll(async () => {
  for (const replica of running) if (replica.child.exitCode === null && replica.child.signalCode === null) replica.child.kill("SIGTERM");
  await Promise.all(running.map((replica) => replica.exited));
  for (const path of dirs) await removeDataDir(path);
  await cluster?.stop();
});

describe("a second replica with the process runtime", () => {
  it("is refused at start with one line, while the first one runs on", async () => {
    const stateUrl = await cluster.createDatabase();
    const env = { SOTA_STATE_URL: stateUrl, SOTA_POOLER_PORTS: poolerPortsSetting(60), SOTA_SPARE_COPIES: "0" };
    const first = start(env);
    await listening(first);
    const second = start(env);
    expect(await second.exited).toBe(1);
    const lines = second.output().trim().split("\n");
    expect(lines.at(-1)).toBe(
      "sota-db: could not start: another sota-db replica already runs the process runtime on this state store (SOTA_STATE_URL); " +
        "it keeps its databases on its own host, so it runs on one replica only",
    );
    expect(second.output()).not.toContain('"level":60');
    expect(second.output()).not.toContain(new URL(stateUrl).password);
    expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
  }, 180_000);
});

if (!engine.reachable && !required) {
  console.warn(`Replica tests on Docker skipped: ${engine.reason} (set SOTA_REQUIRE_DOCKER=1 to fail instead)`);
}

describe.skipIf(!engine.reachable && !required)("two replicas on one PostgreSQL state store and one Docker engine", () => {
  const bed = new DockerTestBed();
  const projectId = randomUUID();
  const slug = `replicas-${bed.runId}`;
  let stateUrl: string;
  let cleanup: ((projectIds: readonly string[]) => Promise<void>) | undefined;

  beforeAll(async () => {
    if (!engine.reachable) throw new Error(`SOTA_REQUIRE_DOCKER=1 but ${engine.reason}`);
    await ensureTestImages();
    cleanup = await serviceObjectsCleanup(bed.appNetwork);
    stateUrl = await cluster.createDatabase();
  });

  afterAll(async () => {
    for (const replica of running) if (replica.child.exitCode === null && replica.child.signalCode === null) replica.child.kill("SIGTERM");
    await Promise.all(running.map((replica) => replica.exited));
    await cleanup?.([projectId]);
  });

  it("serve one project with one database and one password, lead the schedule one at a time, and run every slot once across a leader's kill", async () => {
    const env = {
      SOTA_STATE_URL: stateUrl,
      SOTA_RUNTIME: "docker",
      SOTA_POSTGRES_IMAGE: TEST_POSTGRES_IMAGE,
      SOTA_PGBOUNCER_IMAGE: TEST_PGBOUNCER_IMAGE,
      SOTA_DOCKER_NETWORK: bed.appNetwork,
      SOTA_BACKUP_SCHEDULE: SCHEDULE,
    };
    const replicas = [start(env), start(env)];
    await Promise.all(replicas.map((replica) => listening(replica)));

    // Ensure through both at once: one record, one password, one set of containers. The
    // databases table is held locked until both wait, so their reads of it come together.
    const stall = new pg.Client({ connectionString: stateUrl });
    await stall.connect();
    await stall.query("BEGIN; LOCK TABLE sota.databases IN ACCESS EXCLUSIVE MODE");
    const ensuring = Promise.all(replicas.map((replica) => call(replica, "Ensure", { projectId, slug })));
    await waitUntil("both Ensures wait", async () => {
      const [waiting] = await query<{ n: number }>(stateUrl, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()");
      return waiting!.n >= 2 ? true : undefined;
    }, 30_000);
    await stall.query("COMMIT");
    await stall.end();
    const ensured = await ensuring;
    for (const response of ensured) expect(response.status, await response.clone().text()).toBe(200);
    expect((await Promise.all(ensured.map((response) => response.json() as Promise<{ created?: boolean }>))).filter((body) => body.created).length).toBe(1);
    const urls = await Promise.all(
      replicas.map(async (replica) => ((await (await call(replica, "GetConnection", { projectId })).json()) as { databaseUrl: string }).databaseUrl),
    );
    expect(urls[0]).toMatch(/^postgresql:\/\//);
    expect(urls[1]).toBe(urls[0]);
    // One database: one PostgreSQL and one PgBouncer (its WAL receiver, and
    // the short-lived helpers that set it up after Ensure, are counted apart).
    const containers = await new Docker().listContainers({ all: true, filters: { label: [`io.sota.project-id=${projectId}`] } });
    const roles = containers.map((container) => container.Labels["io.sota.role"] ?? "");
    expect(roles.filter((role) => role !== "helper" && role !== "walreceiver").sort()).toEqual(["pgbouncer", "postgres"]);
    expect(roles.filter((role) => role === "walreceiver").length).toBeLessThanOrEqual(1);
    const psql = async (sql: string): Promise<string> => {
      const app = await bed.runClient(bed.appNetwork, `psql "$DATABASE_URL" -X -A -t -v ON_ERROR_STOP=1 -c "${sql}"`, [`DATABASE_URL=${urls[0]}`]);
      expect(app.exitCode, app.output).toBe(0);
      return app.output.trim();
    };
    expect(await psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1); SELECT 'one password'")).toContain("one password");

    // Restore of one backup through both at once: one after the other, the same data either way.
    const backup = (await (await call(replicas[0]!, "CreateBackup", { projectId, wait: true })).json()) as { backup: { id: string; state: string } };
    expect(backup.backup.state).toBe("BACKUP_STATE_SUCCEEDED");
    await psql("INSERT INTO t VALUES (2)");
    const restored = await Promise.all(replicas.map((replica) => call(replica, "RestoreBackup", { projectId, backupId: backup.backup.id })));
    for (const response of restored) expect(response.status, await response.clone().text()).toBe(200);
    expect(await psql("SELECT sum(v) FROM t")).toBe("1");

    // Exactly one leads.
    const gauges = await waitUntil("one leader", async () => {
      const values = await Promise.all(replicas.map(leaderGauge));
      return values.filter((value) => value === 1).length === 1 && values.every((value) => value !== undefined) ? values : undefined;
    }, 30_000);
    const leader = replicas[gauges.indexOf(1)]!;
    const follower = replicas[gauges.indexOf(0)]!;

    // The leader runs slots; then it dies mid-flight.
    await waitUntil("two scheduled backups by the leader", async () => ((await scheduledBackups()).filter((b) => b.state === "succeeded").length >= 2 ? true : undefined), 60_000);
    leader.child.kill("SIGKILL");
    await leader.exited;
    const killedAt = Date.now();
    await waitUntil("the follower takes over", async () => ((await leaderGauge(follower)) === 1 ? true : undefined), 30_000);
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    const followerPid = String(follower.child.pid);
    await waitUntil(
      "the new leader runs two slots, each with its backup",
      async () => {
        const ran = (await slotsRun()).filter((slot) => slot.replica.endsWith(`:${followerPid}`)).length >= 2;
        const backedUp = (await scheduledBackups()).filter((b) => b.state === "succeeded" && b.started_at > killedAt).length >= 2;
        return ran && backedUp ? true : undefined;
      },
      60_000,
    );

    // Every slot from the first to the last was claimed once: none skipped, none doubled.
    const slots = await slotsRun();
    const times = slots.map((slot) => slot.slot_at);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!, `slot after ${new Date(times[i - 1]!).toISOString()}`).toBe(SLOT_MS);
    expect(new Set(slots.map((slot) => slot.replica)).size).toBe(2);
    // And no slot's interval saw two good scheduled backups of the project (one the killed
    // leader left running is settled as failed and taken again by the new leader).
    const backups = await scheduledBackups();
    expect(backups.length).toBeGreaterThanOrEqual(4);
    const perSlot = new Map<number, number>();
    for (const backup of backups.filter((b) => b.state === "succeeded")) {
      const slot = Math.floor(backup.started_at / SLOT_MS) * SLOT_MS;
      perSlot.set(slot, (perSlot.get(slot) ?? 0) + 1);
    }
    expect([...perSlot.values()].filter((count) => count > 1)).toEqual([]);
    // A backup the killed leader left running was settled by the new one, not left running.
    const stale = backups.filter((backup) => backup.state === "running" && backup.started_at < killedAt - SLOT_MS);
    expect(stale).toEqual([]);

    async function scheduledBackups(): Promise<Array<{ started_at: number; state: string }>> {
      // Dumps: each slot also takes a base backup after the dump.
      return query(stateUrl, "SELECT started_at::float8 AS started_at, state FROM sota.backups WHERE project_id = $1 AND kind = 'scheduled' AND format = 'dump' ORDER BY started_at", [
        projectId,
      ]);
    }

    async function slotsRun(): Promise<Array<{ slot_at: number; replica: string }>> {
      return query(stateUrl, "SELECT slot_at::float8 AS slot_at, replica FROM sota.scheduled_runs ORDER BY slot_at");
    }
  }, 240_000);
});
