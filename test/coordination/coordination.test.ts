// The Coordination port on its two implementations: in-process (one service
// on SQLite) and PostgreSQL advisory locks (replicas sharing a state), the
// latter against a real PostgreSQL, two coordinations standing for two replicas.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { LocalCoordination, SingleReplicaError, type Coordination } from "../../src/coordination/coordination.js";
import { PostgresCoordination } from "../../src/coordination/postgres-coordination.js";
import { createLogger } from "../../src/log.js";
import { startStatePostgres, type StatePostgres } from "../support/state-postgres.js";

const silent = createLogger({ level: "silent" });
let cluster: StatePostgres;
const opened: Coordination[] = [];

beforeAll(async () => {
  cluster = await startStatePostgres();
});
afterAll(async () => {
  await Promise.all(opened.map((coordination) => coordination.close()));
  await cluster?.stop();
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(20);
  }
}

/** Runs the same project's work through every coordination at once; answers the largest number that overlapped. */
async function peakOverlap(coordinations: Coordination[], scope: "project" | "dump", key: string, rounds: number): Promise<number> {
  let active = 0;
  let peak = 0;
  await Promise.all(
    Array.from({ length: rounds }, (_, i) =>
      coordinations[i % coordinations.length]!.withLock(scope, key, async () => {
        active++;
        peak = Math.max(peak, active);
        await sleep(5);
        active--;
      }),
    ),
  );
  return peak;
}

describe("LocalCoordination", () => {
  it("serializes one key, leads at once, and holds any part", async () => {
    const local = new LocalCoordination("here");
    expect(await peakOverlap([local], "project", "p", 10)).toBe(1);
    let release!: () => void;
    const held = local.withLock("dump", "p", () => new Promise<void>((resolve) => (release = resolve)));
    expect(await local.tryWithLock("dump", "p", async () => "ran")).toBeUndefined();
    expect(await local.tryWithLock("project", "p", async () => "ran")).toBe("ran");
    release();
    await held;
    const events: string[] = [];
    local.lead({ elected: () => events.push("elected"), deposed: () => events.push("deposed") });
    expect(events).toEqual(["elected"]);
    expect(local.isLeader()).toBe(true);
    await local.holdExclusively();
  });
});

describe("PostgresCoordination", () => {
  /** Each test its own state: the replicas of one test share it. */
  let stateUrl: string;
  beforeEach(async () => {
    stateUrl = await cluster.createDatabase();
  });
  async function replica(name: string): Promise<PostgresCoordination> {
    const coordination = new PostgresCoordination({ url: stateUrl, replica: name, logger: silent, leaderIntervalMs: 200 });
    opened.push(coordination);
    return coordination;
  }

  it("serializes one project's work across replicas, and lets other projects and scopes through", async () => {
    const [a, b] = [await replica("a"), await replica("b")];
    expect(await peakOverlap([a, b], "project", "p1", 20)).toBe(1);
    let release!: () => void;
    const held = a.withLock("dump", "p1", () => new Promise<void>((resolve) => (release = resolve)));
    await sleep(100);
    expect(await b.tryWithLock("dump", "p1", async () => "ran")).toBeUndefined();
    expect(await b.tryWithLock("dump", "p2", async () => "ran")).toBe("ran");
    expect(await b.tryWithLock("project", "p1", async () => "ran")).toBe("ran");
    release();
    await held;
    expect(await b.tryWithLock("dump", "p1", async () => "ran")).toBe("ran");
    // A failing piece of work releases its lock too.
    await expect(a.withLock("project", "p3", async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect(await b.tryWithLock("project", "p3", async () => "ran")).toBe("ran");
  });

  it("elects one leader, and another once it is gone", async () => {
    const [a, b] = [await replica("a"), await replica("b")];
    const events: string[] = [];
    a.lead({ elected: () => events.push("a elected"), deposed: () => events.push("a deposed") });
    await waitFor(() => a.isLeader());
    b.lead({ elected: () => events.push("b elected"), deposed: () => events.push("b deposed") });
    await sleep(600);
    expect(b.isLeader()).toBe(false);
    await a.close();
    await waitFor(() => b.isLeader());
    expect(events).toEqual(["a elected", "a deposed", "b elected"]);
  });

  it("deposes a leader whose connection is cut, at once, and elects it again when it reconnects", async () => {
    const a = await replica("a");
    const events: string[] = [];
    a.lead({ elected: () => events.push("elected"), deposed: () => events.push("deposed") });
    await waitFor(() => a.isLeader());
    const pg = (await import("pg")).default;
    const admin = new pg.Client({ connectionString: stateUrl });
    await admin.connect();
    try {
      const cut = await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sota-db leader' AND datname = current_database()",
      );
      expect(cut.rowCount).toBe(1);
    } finally {
      await admin.end();
    }
    await waitFor(() => events.includes("deposed"));
    await waitFor(() => events.length === 3);
    expect(events).toEqual(["elected", "deposed", "elected"]);
  });

  it("refuses a part a second replica already holds, with one line", async () => {
    const [a, b] = [await replica("a"), await replica("b")];
    await a.holdExclusively("process runtime");
    const refused = await b.holdExclusively("process runtime").catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(SingleReplicaError);
    expect((refused as Error).message).toMatch(/^another sota-db replica already runs the process runtime on this state store \(SOTA_STATE_URL\)/);
    expect((refused as Error).message).not.toContain("\n");
    await b.holdExclusively("something else");
    await a.close();
    await b.holdExclusively("process runtime");
  });
});
