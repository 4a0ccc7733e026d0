// Row 1: a new database, from the call until the app's first query through
// PgBouncer has answered, for the process driver's variants side by side with
// the floor. One loop takes one sample of each variant per turn, so whatever
// the machine does meanwhile hits all of them alike, and every sample starts
// with the warm pools full and nothing left to write back: the driver flushes
// its copy with syncfs, which would otherwise also pay for the writes of the
// sample before.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ensureDir, SERVICE_USER } from "../../src/runtime/process/host/owned-files.js";
import { templateDir } from "../../src/runtime/process/reserves/template-cluster.js";
import { newDatabaseThroughApi } from "../api-calls.js";
import { appUrl, firstAppQuery, newSpec, openDirectRuntime, type DirectRuntime } from "../direct-runtime.js";
import { floorOnce, type FloorSetup } from "../floor.js";
import type { Plan } from "../plan.js";
import { descendants, pssBytes } from "../proc-memory.js";
import { repeat } from "../repeat.js";
import { settleDisk } from "../settle-disk.js";
import { startService, waitForSpareCopy, type ServiceProcess } from "../service-process.js";
import { summarize, timed, type Summary } from "../stats.js";
import { mb, ms, NONE, skippedRow, times, verdict, type Row } from "../table.js";

const SPARE_PORTS = { min: 31100, max: 31149 };
const COLD_PORTS = { min: 31150, max: 31199 };
const WARM_PORTS = { min: 31200, max: 31299 };
const WARM_SERVICE_PORTS = "31300-31399";
/** One is enough: each sample starts with a full pool, and with its spare copy made. */
const WARM_POOL = 1;
/** The service's default (SOTA_SPARE_COPIES). */
const SPARE_COPIES = 1;
const BUDGET_MS = 150_000;
const FILL_TIMEOUT_MS = 60_000;

export interface EnsureNewResult {
  readonly rows: Row[];
  /** The floor's median, for the Docker row's ratio. */
  readonly floorMedianMs: number;
}

export async function ensureNewRows(plan: Plan, service: ServiceProcess): Promise<EnsureNewResult> {
  const opened: DirectRuntime[] = [];
  let warmService: ServiceProcess | undefined;
  let floorUser: { runtime: DirectRuntime; dir: string } | undefined;
  try {
    const spare = await openDirectRuntime(SPARE_PORTS, { spareCopies: SPARE_COPIES });
    opened.push(spare);
    const cold = await openDirectRuntime(COLD_PORTS);
    opened.push(cold);
    const warm = await openDirectRuntime(WARM_PORTS, { warmPool: WARM_POOL });
    opened.push(warm);
    warmService = await startService({ poolerPorts: WARM_SERVICE_PORTS, env: { SOTA_WARM_POOL: String(WARM_POOL) } });

    // Unmeasured warm-ups: the first ensure of each builds its template cluster.
    await newDirectDatabase(spare);
    await newDirectDatabase(cold);
    await newDirectDatabase(warm);
    await newDatabaseThroughApi(service);
    await newDatabaseThroughApi(warmService);
    const floor = await floorSetup(cold);
    floorUser = { runtime: cold, dir: floor.workDir };
    await floorOnce(floor);
    const serviceHasPool = await waitForServicePool(warmService);

    const samples = {
      floor: [] as number[],
      spare: [] as number[],
      api: [] as number[],
      cold: [] as number[],
      warm: [] as number[],
      warmApi: [] as number[],
    };
    await repeat(plan.ensureNewRuns, BUDGET_MS, async () => {
      const full = AbortSignal.timeout(FILL_TIMEOUT_MS);
      await spare.runtime.spareCopies.whenFull(full);
      await waitForSpareCopy(service, FILL_TIMEOUT_MS);
      await warm.runtime.warmPool.whenFull(full);
      if (serviceHasPool) await waitForServicePool(warmService!);
      await settleDisk();
      samples.floor.push(await floorOnce(floor));
      await settleDisk();
      samples.spare.push(await newDirectDatabase(spare));
      await settleDisk();
      samples.api.push((await timed(() => newDatabaseThroughApi(service))).ms);
      await settleDisk();
      samples.cold.push(await newDirectDatabase(cold));
      await settleDisk();
      samples.warm.push(await newDirectDatabase(warm));
      if (serviceHasPool) {
        await settleDisk();
        samples.warmApi.push((await timed(() => newDatabaseThroughApi(warmService!))).ms);
      }
    });
    await warm.runtime.warmPool.whenFull(AbortSignal.timeout(FILL_TIMEOUT_MS));
    const warmCost = warmInstancePss(warm) / WARM_POOL;

    const floorStats = summarize(samples.floor);
    const processGoal = (stats: Summary): [string, boolean] => [
      "p50 ≤ 1.0 s and ≤ 1.5× floor",
      stats.median <= 1000 && stats.median / floorStats.median <= 1.5,
    ];
    const warmGoal = (stats: Summary): [string, boolean] => [`p50 ≤ 150 ms (pool of ${WARM_POOL} costs ${mb(warmCost)} PSS per warm instance)`, stats.median <= 150];
    const rows: Row[] = [
      {
        id: "1a",
        name: `Ensure new DB: floor, bare script (copy template + start postgres + first query, no fsync, no PgBouncer, no service), n=${floorStats.n}`,
        median: ms(floorStats.median),
        p95: ms(floorStats.p95),
        ratio: times(1),
        goal: "reference",
        met: NONE,
      },
      variantRow(
        "1b",
        `Ensure new DB: process driver called directly, as the service runs it (${SPARE_COPIES} spare copy made ahead: runtime.ensure + app's first query via PgBouncer)`,
        samples.spare,
        floorStats,
        processGoal,
      ),
      variantRow(
        "1c",
        "Ensure new DB: process driver through the service over gRPC, default settings (Ensure + GetConnection + first query via PgBouncer)",
        samples.api,
        floorStats,
        processGoal,
      ),
      variantRow(
        "1d",
        "Ensure new DB: process driver called directly, spare copies off (template copied and flushed inside ensure)",
        samples.cold,
        floorStats,
        () => ["none: what 1b's spare copy saves (the copy, and its flush, which the floor skips)", undefined],
      ),
      variantRow("1e", "Ensure new DB: process driver with warm pool, called directly", samples.warm, floorStats, warmGoal),
      serviceHasPool
        ? variantRow("1f", "Ensure new DB: process driver with warm pool, through the service over gRPC", samples.warmApi, floorStats, warmGoal)
        : skippedRow("1f", "Ensure new DB: process driver with warm pool, through the service over gRPC", "the service started with SOTA_WARM_POOL kept no warm instance ready"),
    ];
    return { rows, floorMedianMs: floorStats.median };
  } finally {
    if (floorUser) await floorUser.runtime.runtime.users.release(floorUser.dir);
    await warmService?.stop();
    for (const runtime of opened) await runtime.close();
  }
}

/** A row of row 1; a goal whose verdict is undefined is informative only. */
function variantRow(id: string, name: string, values: number[], floor: Summary, goal: (stats: Summary) => [string, boolean | undefined]): Row {
  const stats = summarize(values);
  const [goalText, met] = goal(stats);
  return {
    id,
    name: `${name}, n=${stats.n}`,
    median: ms(stats.median),
    p95: ms(stats.p95),
    ratio: `${times(stats.median / floor.median)} floor`,
    goal: goalText,
    met: met === undefined ? NONE : verdict(met),
  };
}

/**
 * Ms from ensure of a new database through the driver to the app's first
 * query through its pooler. The database is removed afterwards, outside the
 * timing, so every sample starts from the same state.
 */
async function newDirectDatabase(direct: DirectRuntime): Promise<number> {
  const spec = newSpec("bench");
  const { ms: elapsed } = await timed(async () => firstAppQuery(appUrl(spec, await direct.runtime.ensure(spec))));
  await direct.runtime.remove(spec, { keepData: false });
  return elapsed;
}

/** The floor runs as an OS user made for it, as a new database does; deleted at the end of the row. */
async function floorSetup(cold: DirectRuntime): Promise<FloorSetup> {
  const { runtime, dataDir } = cold;
  const workDir = join(dataDir, "floor");
  await ensureDir(workDir, { ...SERVICE_USER, mode: 0o711 });
  const runAs = await runtime.users.assign(workDir);
  return { template: templateDir(join(dataDir, "templates"), runtime.binaries.postgres.major), workDir, binaries: runtime.binaries, runAs };
}

/**
 * Whether the service keeps a warm instance, waiting until one is ready: its
 * warm dir holds a copy whose postmaster reports "ready".
 */
async function waitForServicePool(service: ServiceProcess): Promise<boolean> {
  const until = Date.now() + 15_000;
  const warmDir = join(service.dataDir, "warm");
  while (Date.now() < until) {
    for (const name of await readdir(warmDir).catch(() => [] as string[])) {
      const pid = await readFile(join(warmDir, name, "pgdata", "postmaster.pid"), "utf8").catch(() => "");
      if (pid.split("\n")[7]?.trim() !== "ready") continue;
      // The pool lists it once its first connection has answered, just after.
      await new Promise((resolve) => setTimeout(resolve, 50));
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return false;
}

/** PSS of the warm pool's PostgreSQL processes (postmaster and its children). */
function warmInstancePss(direct: DirectRuntime): number {
  const warmDir = join(direct.dataDir, "warm");
  return descendants(process.pid)
    .filter((child) => child.cwd.startsWith(warmDir))
    .reduce((sum, child) => sum + pssBytes(child.pid), 0);
}
