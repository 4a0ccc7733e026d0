// Row 5d: what the pool's reset costs. PgBouncer sends DISCARD ALL on every
// server connection it takes back (server_reset_query_always), so that no
// client inherits another's session state; each transaction through
// DATABASE_URL then costs one more statement on its server connection before
// that connection serves the next. Measured on one database of a process
// driver opened directly, with the same clients, in alternating rounds with
// the reset on and off (SET on PgBouncer's console), so both run on the same
// machine at the same time.
import pg from "pg";
import { appUrl, newSpec, openDirectRuntime } from "../direct-runtime.js";
import type { Plan } from "../plan.js";
import { repeat } from "../repeat.js";
import { median } from "../stats.js";
import { NONE, perSecond, times, type Row } from "../table.js";

const PORTS = { min: 31850, max: 31899 };
/** As many clients as the transaction pool has server connections: the reset is on the busy path. */
const CLIENTS = 20;
const BUDGET_MS = 90_000;

export async function poolResetRows(plan: Plan): Promise<Row[]> {
  const direct = await openDirectRuntime(PORTS);
  try {
    const spec = newSpec("bench-reset");
    const url = appUrl(spec, await direct.runtime.ensure(spec));
    const resetAlways = (on: boolean) => direct.runtime.poolerCommand(spec, `SET server_reset_query_always = ${on ? 1 : 0}`);
    const clients = Array.from({ length: CLIENTS }, () => new pg.Client({ connectionString: url, connectionTimeoutMillis: 30_000 }));
    for (const client of clients) client.on("error", () => undefined);
    try {
      await Promise.all(clients.map((client) => client.connect()));
      const round = async (): Promise<number> => {
        const started = performance.now();
        await Promise.all(
          clients.map(async (client) => {
            for (let i = 0; i < plan.poolResetTransactionsPerClient; i++) await client.query("SELECT 1");
          }),
        );
        return (CLIENTS * plan.poolResetTransactionsPerClient) / ((performance.now() - started) / 1000);
      };
      await round(); // unmeasured: server connections opened, caches warm
      const on: number[] = [];
      const off: number[] = [];
      await repeat(plan.poolResetRounds, BUDGET_MS, async (index) => {
        for (const reset of index % 2 === 0 ? [true, false] : [false, true]) {
          await resetAlways(reset);
          (reset ? on : off).push(await round());
        }
      });
      const ratio = median(on.map((value, i) => value / (off[i] ?? Number.NaN)));
      const shape = `${CLIENTS} clients, autocommit SELECT 1, ${on.length} round(s) each`;
      return [
        {
          id: "5d",
          name: `transactions/s through DATABASE_URL without the pool reset (${shape})`,
          median: perSecond(median(off)),
          p95: NONE,
          ratio: times(1),
          goal: "reference",
          met: NONE,
        },
        {
          id: "5e",
          name: `transactions/s through DATABASE_URL with DISCARD ALL after each transaction, as shipped (${shape})`,
          median: perSecond(median(on)),
          p95: NONE,
          ratio: `${times(ratio)} without`,
          goal: "cost reported (no client sees another's session state)",
          met: NONE,
        },
      ];
    } finally {
      await resetAlways(true).catch(() => undefined);
      await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
    }
  } finally {
    await direct.close();
  }
}
