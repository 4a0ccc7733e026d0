// Row 6: backups. The same database is dumped by the service's backup path
// (pg_dump → gzip → fsynced file with a checksum) and by the shell pipeline
// `pg_dump | gzip > file; sync`, in alternating rounds; the ratio of their
// throughputs shows what the service's streaming costs. Meanwhile the RSS of
// the service is sampled: it must stay flat however large the database is.
import { execFile } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import type { Binaries } from "../../src/runtime/process/index.js";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";
import { appRoleName } from "../../src/runtime/shared/app-role.js";
import { POSTGRES_PORT } from "../../src/runtime/process/children/postgres-settings.js";
import { socketConninfo } from "../../src/runtime/shared/socket-sessions.js";
import { databaseUrl, newDatabaseThroughApi } from "../api-calls.js";
import type { Plan } from "../plan.js";
import { repeat } from "../repeat.js";
import { startService } from "../service-process.js";
import { summarize, timed } from "../stats.js";
import { mb, ms, NONE, times, verdict, type Row } from "../table.js";

const run = promisify(execFile);
const SERVICE_PORTS = "31600-31699";
const LOAD_BUDGET_MS = 240_000;
const ROUNDS_BUDGET_MS = 240_000;
/** About what one row of the generated table takes on disk, index included. */
const BYTES_PER_ROW = 340;
const MAX_ROWS_PER_CHUNK = 400_000;
const RSS_SAMPLE_MS = 50;
/** "Memory stays flat whatever the database size" (DESIGN), made a number. */
const FLAT_RSS_GROWTH = 64 * 1024 * 1024;

interface BackupSubject {
  readonly socketDir: string;
  readonly database: string;
  /** Where the shell pipeline writes its file: beside the service's backups. */
  readonly scratchDir: string;
  backup(): Promise<void>;
  rss(): number;
  close(): Promise<void>;
}

export async function backupRows(plan: Plan, binaries: Binaries): Promise<Row[]> {
  const subject = await serviceSubject();
  try {
    const sizeBytes = await load(subject, plan.backupBytes);
    const shellMs: number[] = [];
    const serviceMs: number[] = [];
    const growth: number[] = [];
    await repeat(plan.backupRounds, ROUNDS_BUDGET_MS, async () => {
      shellMs.push((await timed(() => shellPipeline(subject, binaries))).ms);
      const baseline = subject.rss();
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, subject.rss())), RSS_SAMPLE_MS);
      try {
        serviceMs.push((await timed(() => subject.backup())).ms);
      } finally {
        clearInterval(sampler);
      }
      growth.push(Math.max(peak, subject.rss()) - baseline);
    });
    const shell = summarize(shellMs);
    const service = summarize(serviceMs);
    const throughput = (elapsedMs: number): string => `${mb((sizeBytes / elapsedMs) * 1000)}/s`;
    const worstGrowth = Math.max(...growth);
    const size = mb(sizeBytes);
    return [
      {
        id: "6a",
        name: `backup of a ${size} database: \`pg_dump | gzip > file; sync\` (reference), n=${shell.n}`,
        median: ms(shell.median),
        p95: ms(shell.p95),
        ratio: `${times(1)} (${throughput(shell.median)})`,
        goal: "reference",
        met: NONE,
      },
      {
        id: "6b",
        name: `backup of the same database: the service over gRPC (CreateBackup with wait), n=${service.n}`,
        median: ms(service.median),
        p95: ms(service.p95),
        ratio: `${times(shell.median / service.median)} reference throughput (${throughput(service.median)})`,
        goal: "none set in issue 5",
        met: NONE,
      },
      {
        id: "6c",
        name: `RSS growth of the process taking a ${size} backup (peak, sampled every ${RSS_SAMPLE_MS} ms)`,
        median: mb(summarize(growth).median),
        p95: mb(worstGrowth),
        ratio: NONE,
        goal: `flat: ≤ ${mb(FLAT_RSS_GROWTH)} whatever the size`,
        met: verdict(worstGrowth <= FLAT_RSS_GROWTH),
      },
    ];
  } finally {
    await subject.close();
  }
}

/** A service with one database, backed up over gRPC as the deploy engine or a person with curl would. */
async function serviceSubject(): Promise<BackupSubject> {
  const service = await startService({ poolerPorts: SERVICE_PORTS });
  try {
    const projectId = await newDatabaseThroughApi(service);
    const backup = async (): Promise<void> => {
      await service.database("createBackup", { projectId, wait: true }, service.token);
    };
    const slug = decodeURIComponent(new URL(await databaseUrl(service, projectId)).pathname.slice(1));
    return {
      socketDir: instancePaths(service.dataDir, slug).socketDir,
      database: slug,
      scratchDir: service.dataDir,
      backup,
      rss: () => service.rssBytes(),
      close: () => service.stop(),
    };
  } catch (error) {
    await service.stop();
    throw error;
  }
}

/** Fills the database with about `bytes` of rows; returns its real size. Row 7 loads its databases the same way. */
export async function load(subject: Pick<BackupSubject, "socketDir" | "database">, bytes: number, options: { logged?: boolean } = {}): Promise<number> {
  // As the app role, as an app would: the table is the tenant's, which the service's dump (as the app role) can read.
  const client = new pg.Client({ host: subject.socketDir, user: appRoleName(subject.database), database: subject.database });
  client.on("error", () => undefined);
  await client.connect();
  try {
    // Unlogged: the dump is the same, and the load takes half the time without
    // WAL. Logged where the rows must survive a recovery (point-in-time rows).
    await client.query(`CREATE ${options.logged ? "" : "UNLOGGED "}TABLE bench_rows (id bigint PRIMARY KEY, payload text NOT NULL)`);
    const size = async (): Promise<number> =>
      Number((await client.query<{ size: string }>("SELECT pg_database_size(current_database())::text AS size")).rows[0]?.size);
    const until = Date.now() + LOAD_BUDGET_MS;
    // Several chunks: bounded statements, and the size is checked between them.
    const chunk = Math.max(1_000, Math.min(MAX_ROWS_PER_CHUNK, Math.ceil(bytes / BYTES_PER_ROW / 4)));
    for (let next = 1; (await size()) < bytes && Date.now() < until; next += chunk) {
      // md5 text repeated: compresses like ordinary text columns do, neither random nor trivial.
      await client.query("INSERT INTO bench_rows SELECT g, repeat(md5(g::text), 8) FROM generate_series($1::bigint, $2::bigint) g", [
        next,
        next + chunk - 1,
      ]);
    }
    await client.query("VACUUM ANALYZE bench_rows");
    return await size();
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function shellPipeline(subject: BackupSubject, binaries: Binaries): Promise<void> {
  const file = join(subject.scratchDir, "shell-backup.sql.gz");
  try {
    await run("bash", ["-o", "pipefail", "-c", 'pg_dump --no-password --dbname "$1" | gzip > "$2" && sync "$2"', "bash", socketConninfo(subject.socketDir, POSTGRES_PORT, appRoleName(subject.database), subject.database), file], {
      env: { PATH: `${binaries.postgres.binDir}:${process.env["PATH"] ?? "/usr/bin:/bin"}` },
      maxBuffer: 1024 * 1024,
    });
  } finally {
    await rm(file, { force: true });
  }
}
