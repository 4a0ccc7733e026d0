// Row 4: density. A fresh service provisions many databases with the process
// driver, one after the other over gRPC; then, once they idle, the kernel's
// accounting says what each costs (PSS of its postmaster, backends and
// PgBouncer) and what the service itself holds (RSS), and the Ensure times of
// the last databases are compared with the first ones.
import { join, sep } from "node:path";
import { newDatabaseThroughApi } from "../api-calls.js";
import type { Plan } from "../plan.js";
import { descendants, pssBytes } from "../proc-memory.js";
import { repeat } from "../repeat.js";
import { startService } from "../service-process.js";
import { summarize, timed } from "../stats.js";
import { mb, ms, NONE, times, verdict, type Row } from "../table.js";

const POOLER_PORTS = "31400-31599";
const BUDGET_MS = 240_000;
/** Start-up work (first checkpoints, autovacuum's first look) done before memory is read. */
const SETTLE_MS = 5_000;

export async function densityRows(plan: Plan): Promise<Row[]> {
  const service = await startService({ poolerPorts: POOLER_PORTS });
  try {
    const ensureMs: number[] = [];
    const made = await repeat(plan.densityDatabases, BUDGET_MS, async () => {
      ensureMs.push((await timed(() => newDatabaseThroughApi(service))).ms);
    });
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const perDatabase = summarize([...pssByInstance(service.pid, join(service.dataDir, "instances")).values()]);
    const serviceRss = service.rssBytes();

    // The very first Ensure also builds the template cluster (initdb, once per
    // service), so "the first" are databases 2..k+1.
    const k = Math.min(plan.densityEdge, Math.floor((made - 1) / 2));
    const first = summarize(ensureMs.slice(1, 1 + k));
    const last = summarize(ensureMs.slice(-k));
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
        name: `service RSS with ${made} databases`,
        median: mb(serviceRss),
        p95: NONE,
        ratio: NONE,
        goal: "≤ 200 MB",
        met: verdict(serviceRss <= 200 * 1024 * 1024),
      },
      {
        id: "4c",
        name: `Ensure new DB over gRPC (+ first query), databases ${made - k + 1}..${made} vs 2..${k + 1}`,
        median: ms(last.median),
        p95: ms(last.p95),
        ratio: `${times(growth)} first (${ms(first.median)})`,
        goal: "≤ 1.5× the first",
        met: verdict(growth <= 1.5),
      },
    ];
  } finally {
    await service.stop();
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
