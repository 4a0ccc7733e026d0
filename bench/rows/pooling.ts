// Row 5: the pooler in effect. 100 clients connect through PgBouncer at once
// and each holds a transaction open; a 101st is turned away by PgBouncer; and
// PostgreSQL, sampled every 10 ms while they wait in line, never serves more
// than the pool's 20 connections for the app role.
import pg from "pg";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";
import { databaseUrl } from "../api-calls.js";
import type { Plan } from "../plan.js";
import { repeat } from "../repeat.js";
import type { ServiceProcess } from "../service-process.js";
import { summarize } from "../stats.js";
import { ms, NONE, verdict, type Row } from "../table.js";

const CLIENTS = 100;
const POOL_SIZE = 20;
const HOLD_SECONDS = 0.2;
const SAMPLE_MS = 10;
const BUDGET_MS = 60_000;

interface Round {
  readonly succeeded: number;
  readonly transactionMs: number[];
  readonly overflow: string;
  readonly maxServerConnections: number;
}

export async function poolingRows(plan: Plan, service: ServiceProcess, projectId: string): Promise<Row[]> {
  const url = await databaseUrl(service, projectId);
  const { pathname, username } = new URL(url);
  const socketDir = instancePaths(service.dataDir, decodeURIComponent(pathname.slice(1))).socketDir;
  const rounds: Round[] = [];
  await repeat(plan.poolingRounds, BUDGET_MS, async () => {
    rounds.push(await poolingRound(url, decodeURIComponent(username), socketDir));
  });
  const succeeded = rounds.reduce((sum, round) => sum + round.succeeded, 0);
  const transactions = summarize(rounds.flatMap((round) => round.transactionMs));
  const maxServer = Math.max(...rounds.map((round) => round.maxServerConnections));
  const overflow = rounds.map((round) => round.overflow);
  const clearError = overflow.every((text) => text.includes("max_client_conn"));
  return [
    {
      id: "5a",
      name: `${CLIENTS} concurrent clients through PgBouncer, each BEGIN; pg_sleep(${HOLD_SECONDS}); COMMIT (transaction time, queueing included), ${rounds.length} round(s)`,
      median: ms(transactions.median),
      p95: ms(transactions.p95),
      ratio: NONE,
      goal: `all succeed (${succeeded}/${CLIENTS * rounds.length})`,
      met: verdict(succeeded === CLIENTS * rounds.length),
    },
    {
      id: "5b",
      name: `client ${CLIENTS + 1} while ${CLIENTS} are connected`,
      median: NONE,
      p95: NONE,
      ratio: NONE,
      goal: `PgBouncer's clear error (got: "${overflow[0] ?? "nothing"}")`,
      met: verdict(clearError),
    },
    {
      id: "5c",
      name: `server connections of the app role in pg_stat_activity, sampled every ${SAMPLE_MS} ms while the ${CLIENTS} wait`,
      median: NONE,
      p95: NONE,
      ratio: NONE,
      goal: `never > ${POOL_SIZE} (max seen ${maxServer})`,
      met: verdict(maxServer <= POOL_SIZE && maxServer > 0),
    },
  ];
}

async function poolingRound(url: string, role: string, socketDir: string): Promise<Round> {
  const clients = Array.from({ length: CLIENTS }, () => quietClient(url));
  const sampler = quietClient({ host: socketDir, user: "postgres", database: "postgres" });
  try {
    const connected = await Promise.allSettled(clients.map((client) => client.connect()));
    const overflow = await overflowError(url);
    await sampler.connect();
    let sampling = true;
    let maxServerConnections = 0;
    const samples = (async () => {
      while (sampling) {
        const result = await sampler.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'",
          [role],
        );
        maxServerConnections = Math.max(maxServerConnections, result.rows[0]?.n ?? 0);
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
      }
    })();
    const transactionMs: number[] = [];
    const transactions = await Promise.allSettled(
      clients.map(async (client, i) => {
        if (connected[i]?.status !== "fulfilled") throw new Error("not connected");
        const begun = performance.now();
        await client.query("BEGIN");
        await client.query(`SELECT pg_sleep(${HOLD_SECONDS})`);
        await client.query("COMMIT");
        transactionMs.push(performance.now() - begun);
      }),
    );
    sampling = false;
    await samples;
    return {
      succeeded: transactions.filter((outcome) => outcome.status === "fulfilled").length,
      transactionMs,
      overflow,
      maxServerConnections,
    };
  } finally {
    await Promise.all([...clients, sampler].map((client) => client.end().catch(() => undefined)));
  }
}

/** What a client gets when it connects beyond max_client_conn. */
async function overflowError(url: string): Promise<string> {
  const extra = quietClient(url);
  try {
    await extra.connect();
    return "connected: no limit";
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    await extra.end().catch(() => undefined);
  }
}

function quietClient(config: string | pg.ClientConfig): pg.Client {
  const client = new pg.Client(typeof config === "string" ? { connectionString: config, connectionTimeoutMillis: 30_000 } : config);
  client.on("error", () => undefined);
  return client;
}
