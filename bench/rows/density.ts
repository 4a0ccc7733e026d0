// Row 4: density. A fresh service provisions many databases with the process
// driver, one after the other over gRPC; then, once they idle, the kernel's
// accounting says what each costs (PSS of its postmaster, backends and
// PgBouncer) and what the service itself holds (RSS). The last databases'
// Ensure times are compared with those of a second service that holds only a
// few, sample for sample in alternation: the 1st and the 100th database lie a
// minute apart, long enough for this machine's load to change under them.
// Row 4d: a third service with the default resource limits on (each database
// in a cgroup of its own) makes a few databases; their idle memory is read the
// same way, next to 4a's (that service runs with the limits off, as before).
import { join, sep } from "node:path";
import { newDatabaseThroughApi } from "../api-calls.js";
import type { Plan } from "../plan.js";
import { descendants, pssBytes } from "../proc-memory.js";
import { repeat } from "../repeat.js";
import { settleDisk } from "../settle-disk.js";
import { startService, waitForSpareCopy } from "../service-process.js";
import { summarize, timed } from "../stats.js";
import { mb, ms, NONE, times, verdict, type Row } from "../table.js";

const POOLER_PORTS = "31400-31599";
const BASELINE_POOLER_PORTS = "31800-31849";
const LIMITED_POOLER_PORTS = "31900-31949";
/** The limits off: 4a measures what a database costs without them, as before they existed. */
const NO_LIMITS = { SOTA_DB_MEMORY_MB: "0", SOTA_DB_CPUS: "0", SOTA_DB_PIDS: "0" };
const BUDGET_MS = 240_000;
/** Start-up work (first checkpoints, autovacuum's first look) done before memory is read. */
const SETTLE_MS = 5_000;

export async function densityRows(plan: Plan): Promise<Row[]> {
  const service = await startService({ poolerPorts: POOLER_PORTS, env: NO_LIMITS });
  const baseline = await startService({ poolerPorts: BASELINE_POOLER_PORTS, env: NO_LIMITS }).catch(async (error: unknown) => {
    await service.stop();
    throw error;
  });
  // The defaults: memory, CPU and pids limits per database.
  const limited = await startService({ poolerPorts: LIMITED_POOLER_PORTS }).catch(async (error: unknown) => {
    await Promise.all([service.stop(), baseline.stop()]);
    throw error;
  });
  try {
    // Unmeasured: each service's first Ensure also builds its template cluster.
    await newDatabaseThroughApi(baseline);
    const k = plan.densityEdge;
    const made = await repeat(plan.densityDatabases - k, BUDGET_MS, () => newDatabaseThroughApi(service).then(() => undefined));
    const firstMs: number[] = [];
    const lastMs: number[] = [];
    // Each from the steady state a deploy meets: the service's spare copy made.
    for (let i = 0; i < k; i++) {
      await waitForSpareCopy(baseline);
      await settleDisk();
      firstMs.push((await timed(() => newDatabaseThroughApi(baseline))).ms);
      await waitForSpareCopy(service);
      await settleDisk();
      lastMs.push((await timed(() => newDatabaseThroughApi(service))).ms);
    }
    const total = made + k;
    const limitedCount = Math.min(10, plan.densityDatabases);
    for (let i = 0; i < limitedCount; i++) await newDatabaseThroughApi(limited);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const perDatabase = summarize([...pssByInstance(service.pid, join(service.dataDir, "instances")).values()]);
    const perLimited = summarize([...pssByInstance(limited.pid, join(limited.dataDir, "instances")).values()]);
    const serviceRss = service.rssBytes();
    const first = summarize(firstMs);
    const last = summarize(lastMs);
    const growth = last.median / first.median;
    return [
      {
        id: "4a",
        name: `idle memory per database, ${perDatabase.n} databases (PSS of its postmaster, backends and PgBouncer)`,
        median: mb(perDatabase.median),
        p95: mb(perDatabase.p95),
        ratio: NONE,
        goal: "≤ 25 MB",
        met: verdict(perDatabase.median <= 25 * 1024 * 1024),
      },
      {
        id: "4b",
        name: `service RSS with ${total} databases`,
        median: mb(serviceRss),
        p95: NONE,
        ratio: NONE,
        goal: "≤ 200 MB",
        met: verdict(serviceRss <= 200 * 1024 * 1024),
      },
      {
        id: "4c",
        name: `Ensure new DB over gRPC (+ first query): databases ${made + 1}..${total} vs 2..${k + 1} of a second service, alternating`,
        median: ms(last.median),
        p95: ms(last.p95),
        ratio: `${times(growth)} first (${ms(first.median)})`,
        goal: "≤ 1.5× the first",
        met: verdict(growth <= 1.5),
      },
      {
        id: "4d",
        name: `idle memory per database with the default limits on (own cgroup: memory, CPU, pids), ${perLimited.n} databases`,
        median: mb(perLimited.median),
        p95: mb(perLimited.p95),
        ratio: `${times(perLimited.median / perDatabase.median)} 4a (${mb(perDatabase.median)}, limits off)`,
        goal: "≤ 25 MB",
        met: verdict(perLimited.median <= 25 * 1024 * 1024),
      },
    ];
  } finally {
    await Promise.all([service.stop(), baseline.stop(), limited.stop()]);
  }
}

/** PSS summed per instance directory (instances/{slug}) over the service's descendants. */
function pssByInstance(servicePid: number, instancesDir: string): Map<string, number> {
  const totals = new Map<string, number>();
  for (const child of descendants(servicePid)) {
    if (!child.cwd.startsWith(instancesDir + sep)) continue;
    const slug = child.cwd.slice(instancesDir.length + 1).split(sep)[0]!;
    totals.set(slug, (totals.get(slug) ?? 0) + pssBytes(child.pid));
  }
  return totals;
}
