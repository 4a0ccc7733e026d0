// Row 2: Ensure on a database that exists, as the deploy engine calls it on
// every deploy, over gRPC; each call is paired with a no-op call on the same
// server and transport (grpc.health.v1 Check), so the ratio shows what Ensure
// adds to a round trip.
import { ensure } from "../api-calls.js";
import type { Plan } from "../plan.js";
import { repeat } from "../repeat.js";
import { waitForSpareCopy, type ServiceProcess } from "../service-process.js";
import { summarize, timed } from "../stats.js";
import { SQLITE_STATE, type StateStoreVariant } from "../state-store.js";
import { ms, times, verdict, type Row } from "../table.js";

/** JIT warm-up: the measured calls meet a service that has been up a while, as a deploy does. */
const WARM_UP_CALLS = 300;
const BUDGET_MS = 60_000;

export async function ensureExistingRows(
  plan: Plan,
  service: ServiceProcess,
  projectId: string,
  state: StateStoreVariant = SQLITE_STATE,
): Promise<Row[]> {
  const noop = (): Promise<unknown> => service.health("check", { service: "" });
  // Not while the spare copy that the last new database used is being made again.
  await waitForSpareCopy(service);
  for (let i = 0; i < WARM_UP_CALLS; i++) await Promise.all([ensure(service, projectId), noop()]);
  const ensureMs: number[] = [];
  const noopMs: number[] = [];
  await repeat(plan.ensureExistingCalls, BUDGET_MS, async () => {
    ensureMs.push((await timed(() => ensure(service, projectId))).ms);
    noopMs.push((await timed(noop)).ms);
  });
  const stats = summarize(ensureMs);
  const reference = summarize(noopMs);
  return [
    {
      id: `2${state.idSuffix}`,
      name: `Ensure on an existing database over gRPC (sequential calls)${state.label}, n=${stats.n}`,
      median: ms(stats.median),
      p95: ms(stats.p95),
      ratio: `${times(stats.median / reference.median)} no-op call (${ms(reference.median)})`,
      goal: `p99 ≤ 5 ms (p99 ${ms(stats.p99)}; no-op p99 ${ms(reference.p99)})`,
      met: verdict(stats.p99 <= 5),
    },
  ];
}
