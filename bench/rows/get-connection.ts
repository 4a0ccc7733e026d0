// Row 3: GetConnection throughput over gRPC with a real @grpc/grpc-js client
// and 32 calls in flight, as a ratio to a no-op method on the same server
// stack and transport (grpc.health.v1 Check: no auth, a trivial readiness).
// Rounds of the two alternate, and which goes first alternates too, so the
// machine's drift cancels out of the ratio.
import { databaseUrl } from "../api-calls.js";
import type { Plan } from "../plan.js";
import { concurrently } from "../repeat.js";
import type { ServiceProcess } from "../service-process.js";
import { median, summarize } from "../stats.js";
import { SQLITE_STATE, type StateStoreVariant } from "../state-store.js";
import { ms, NONE, perSecond, times, verdict, type Row } from "../table.js";

const ROUND_BUDGET_MS = 20_000;

interface Round {
  readonly perSecond: number;
  readonly latenciesMs: number[];
}

export async function getConnectionRows(
  plan: Plan,
  service: ServiceProcess,
  projectId: string,
  state: StateStoreVariant = SQLITE_STATE,
): Promise<Row[]> {
  const getConnection = async (): Promise<void> => {
    await databaseUrl(service, projectId);
  };
  const noop = async (): Promise<void> => {
    await service.health("check", { service: "" });
  };
  const round = async (call: () => Promise<void>): Promise<Round> => {
    const latenciesMs: number[] = [];
    const started = performance.now();
    const calls = await concurrently(plan.grpcConcurrency, plan.grpcCallsPerRound, ROUND_BUDGET_MS, async () => {
      const begun = performance.now();
      await call();
      latenciesMs.push(performance.now() - begun);
    });
    return { perSecond: calls / ((performance.now() - started) / 1000), latenciesMs };
  };
  // Unmeasured: connection set-up, JIT, the store's page cache.
  await round(noop);
  await round(getConnection);

  const noopRounds: Round[] = [];
  const connectionRounds: Round[] = [];
  for (let i = 0; i < plan.grpcRounds; i++) {
    if (i % 2 === 0) {
      noopRounds.push(await round(noop));
      connectionRounds.push(await round(getConnection));
    } else {
      connectionRounds.push(await round(getConnection));
      noopRounds.push(await round(noop));
    }
  }
  const ratio = median(connectionRounds.map((rounds, i) => rounds.perSecond / noopRounds[i]!.perSecond));
  const describe = (rounds: Round[]) => ({
    perSecond: median(rounds.map((r) => r.perSecond)),
    p95: summarize(rounds.flatMap((r) => r.latenciesMs)).p95,
  });
  const noopStats = describe(noopRounds);
  const connectionStats = describe(connectionRounds);
  const shape = `${plan.grpcConcurrency} in flight, ${plan.grpcRounds} rounds of ≤${plan.grpcCallsPerRound} calls`;
  return [
    {
      id: `3a${state.idSuffix}`,
      name: `No-op over gRPC (grpc.health.v1 Check)${state.label}, ${shape}: calls/s; p95 = latency`,
      median: perSecond(noopStats.perSecond),
      p95: ms(noopStats.p95),
      ratio: times(1),
      goal: "reference",
      met: NONE,
    },
    {
      id: `3b${state.idSuffix}`,
      name: `GetConnection over gRPC (@grpc/grpc-js)${state.label}, ${shape}: calls/s; p95 = latency`,
      median: perSecond(connectionStats.perSecond),
      p95: ms(connectionStats.p95),
      ratio: `${times(ratio)} no-op`,
      goal: "≥ 0.8× no-op",
      met: verdict(ratio >= 0.8),
    },
  ];
}
