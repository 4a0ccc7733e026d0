// Rows 7 and 8: a database's end and its password's change, over gRPC as the
// deploy engine makes them. Delete: the time until DeleteDatabase answers,
// when everything of the database is gone from the host, with the final
// backup of a loaded database, and without one (the removal alone). Rotate:
// the time until the new DATABASE_URL serves a query, and how many of the
// connections opened with the old password before the call still serve one
// after it (the goal: all).
import pg from "pg";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";
import { databaseUrl, newDatabaseThroughApi } from "../api-calls.js";
import { firstAppQuery } from "../direct-runtime.js";
import type { Plan } from "../plan.js";
import { repeat } from "../repeat.js";
import { startService } from "../service-process.js";
import { summarize, timed } from "../stats.js";
import { mb, ms, NONE, verdict, type Row } from "../table.js";
import { load } from "./backups.js";

const DELETE_SERVICE_PORTS = "31700-31749";
const ROTATE_SERVICE_PORTS = "31750-31799";
const ROUNDS_BUDGET_MS = 300_000;

export async function deleteRows(plan: Plan): Promise<Row[]> {
  const service = await startService({ poolerPorts: DELETE_SERVICE_PORTS });
  try {
    const withBackupMs: number[] = [];
    const withoutMs: number[] = [];
    let sizeBytes = 0;
    await repeat(plan.deleteRounds, ROUNDS_BUDGET_MS, async () => {
      for (const skipFinalBackup of [false, true]) {
        const projectId = await newDatabaseThroughApi(service);
        const slug = decodeURIComponent(new URL(await databaseUrl(service, projectId)).pathname.slice(1));
        const loaded = await load({ socketDir: instancePaths(service.dataDir, slug).socketDir, database: slug }, plan.deleteBytes);
        const { ms: elapsed } = await timed(() => service.database("deleteDatabase", { projectId, skipFinalBackup }, service.token));
        if (skipFinalBackup) withoutMs.push(elapsed);
        else {
          withBackupMs.push(elapsed);
          sizeBytes = Math.max(sizeBytes, loaded);
        }
      }
    });
    const withBackup = summarize(withBackupMs);
    const without = summarize(withoutMs);
    return [
      {
        id: "7a",
        name: `DeleteDatabase of a ${mb(sizeBytes)} database until gone from the host, final backup included, n=${withBackup.n}`,
        median: ms(withBackup.median),
        p95: ms(withBackup.p95),
        ratio: NONE,
        goal: "none set in issue 11",
        met: NONE,
      },
      {
        id: "7b",
        name: `DeleteDatabase of the same size with skip_final_backup (the removal alone), n=${without.n}`,
        median: ms(without.median),
        p95: ms(without.p95),
        ratio: NONE,
        goal: "none set in issue 11",
        met: NONE,
      },
    ];
  } finally {
    await service.stop();
  }
}

export async function rotateRows(plan: Plan): Promise<Row[]> {
  const service = await startService({ poolerPorts: ROTATE_SERVICE_PORTS });
  try {
    const projectId = await newDatabaseThroughApi(service);
    const untilWorksMs: number[] = [];
    let held = 0;
    let survived = 0;
    await repeat(plan.rotateRounds, ROUNDS_BUDGET_MS, async () => {
      const oldUrl = await databaseUrl(service, projectId);
      const open = await Promise.all(Array.from({ length: plan.rotateOpenConnections }, () => connected(oldUrl)));
      try {
        const { ms: elapsed } = await timed(async () => {
          const { databaseUrl: newUrl } = (await service.database("rotateCredentials", { projectId }, service.token)) as { databaseUrl: string };
          await firstAppQuery(newUrl);
        });
        untilWorksMs.push(elapsed);
        held += open.length;
        const outcomes = await Promise.allSettled(open.map((client) => client.query("SELECT 1")));
        survived += outcomes.filter((outcome) => outcome.status === "fulfilled").length;
      } finally {
        await Promise.all(open.map((client) => client.end().catch(() => undefined)));
      }
    });
    const untilWorks = summarize(untilWorksMs);
    return [
      {
        id: "8a",
        name: `RotateCredentials until the new DATABASE_URL serves a query, n=${untilWorks.n}`,
        median: ms(untilWorks.median),
        p95: ms(untilWorks.p95),
        ratio: NONE,
        goal: "none set in issue 11",
        met: NONE,
      },
      {
        id: "8b",
        name: `connections opened with the old password that still serve a query after the rotation (${plan.rotateOpenConnections} per rotation)`,
        median: `${survived}/${held}`,
        p95: NONE,
        ratio: NONE,
        goal: "all",
        met: verdict(held > 0 && survived === held),
      },
    ];
  } finally {
    await service.stop();
  }
}

async function connected(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on("error", () => undefined);
  await client.connect();
  return client;
}
