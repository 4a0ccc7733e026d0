// Rows 9: point-in-time recovery, on the process driver called directly.
//   9a  RPO: rows committed every 50 ms; the data directory is destroyed
//       while the server runs; a recovery to the end of the archived WAL must
//       hold the row committed 5 s before (the goal), and says how close to
//       the destruction the last recovered commit was.
//   9b/c  a point-in-time restore of a loaded database (1 GB in the full run)
//       by the driver (runtime.pitr.recover: the server stopped, the base
//       backup unpacked and replayed to the target, promoted, restarted behind
//       the same pooler, a new WAL generation), against the same tools run by
//       hand on the same base backup and WAL (tar, cp, postgres in recovery
//       until it promotes): the floor. Alternating rounds.
//   9d  WAL an idle database costs per day: what pg_receivewal streams while
//       nothing is written, over a window, scaled to a day.
import { spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Binaries } from "../../src/runtime/process/index.js";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";
import { appRoleName } from "../../src/runtime/shared/app-role.js";
import type { DatabaseSpec, PointInTimeRecovery, RuntimeTarget } from "../../src/runtime/runtime.js";
import { newSpec, openDirectRuntime, type DirectRuntime } from "../direct-runtime.js";
import type { Plan } from "../plan.js";
import { repeat } from "../repeat.js";
import { summarize, timed } from "../stats.js";
import { mb, ms, NONE, times, verdict, type Row } from "../table.js";
import { load } from "./backups.js";

const PORTS = { min: 32000, max: 32049 };
const RPO_GOAL_MS = 5_000;
const COMMIT_EVERY_MS = 50;
const STREAMING_WITHIN_MS = 30_000;
const ROUNDS_BUDGET_MS = 600_000;
const DAY_MS = 24 * 60 * 60 * 1000;
/** What archive_timeout = 60 s would ship for an idle database: one 16 MiB segment a minute. */
const ARCHIVE_TIMEOUT_SEGMENTS_PER_DAY = 24 * 60;
const SEGMENT_BYTES = 16 * 1024 * 1024;
const FLOOR_PORT = 32099;

export async function pitrRows(plan: Plan, binaries: Binaries): Promise<Row[]> {
  const direct = await openDirectRuntime(PORTS);
  try {
    const pitr = direct.runtime.pitr;
    if (!pitr) throw new Error("the process driver has no point-in-time recovery");
    return [...(await rpoRows(direct, pitr)), ...(await restoreRows(plan, binaries, direct, pitr)), ...(await idleWalRows(plan, direct, pitr))];
  } finally {
    await direct.close();
  }
}

async function rpoRows(direct: DirectRuntime, pitr: PointInTimeRecovery): Promise<Row[]> {
  const spec = newSpec("bench-rpo");
  await direct.runtime.ensure(spec);
  const generation = (await streaming(pitr, spec)).id;
  const base = await baseBackupFile(direct, pitr, spec, "rpo");
  const client = await appClient(direct, spec);
  await client.query("CREATE TABLE commits (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())");
  // Commits for a little longer than the goal, then the data directory goes.
  const committed: { n: number; at: number }[] = [];
  const until = Date.now() + RPO_GOAL_MS + 1_000;
  for (let n = 1; Date.now() < until; n++) {
    await client.query("INSERT INTO commits (n) VALUES ($1)", [n]);
    committed.push({ n, at: Date.now() });
    await sleep(COMMIT_EVERY_MS);
  }
  await client.end().catch(() => undefined);
  const destroyedAt = Date.now();
  await rm(instancePaths(direct.dataDir, spec.slug).pgdata, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  const { ms: recoverMs } = await timed(() => pitr.recover(spec, createReadStream(base), { source: spec, generation }));
  const recovered = await appClient(direct, spec);
  let last: number;
  try {
    last = Number((await recovered.query<{ n: string }>("SELECT max(n)::text AS n FROM commits")).rows[0]?.n ?? 0);
  } finally {
    await recovered.end().catch(() => undefined);
  }
  const fiveSecondsBefore = [...committed].reverse().find((commit) => commit.at <= destroyedAt - RPO_GOAL_MS);
  const lastRecovered = committed.find((commit) => commit.n === last);
  const lostMs = lastRecovered ? destroyedAt - lastRecovered.at : Number.POSITIVE_INFINITY;
  const met = fiveSecondsBefore !== undefined && last >= fiveSecondsBefore.n;
  await rm(base, { force: true });
  await direct.runtime.remove(spec, { keepData: false });
  return [
    {
      id: "9a",
      name: `RPO: rows committed every ${COMMIT_EVERY_MS} ms, data directory destroyed while the server runs, recovered to the end of the streamed WAL (${committed.length} commits, recovery took ${ms(recoverMs)})`,
      median: `${ms(lostMs)} lost`,
      p95: NONE,
      ratio: NONE,
      goal: `the row committed ${RPO_GOAL_MS / 1000} s before is recovered (RPO ≤ 5 s)`,
      met: verdict(met),
    },
  ];
}

async function restoreRows(plan: Plan, binaries: Binaries, direct: DirectRuntime, pitr: PointInTimeRecovery): Promise<Row[]> {
  const spec = newSpec("bench-pitr");
  await direct.runtime.ensure(spec);
  const paths = instancePaths(direct.dataDir, spec.slug);
  const sizeBytes = await load({ socketDir: paths.socketDir, database: spec.slug }, plan.pitrBytes, { logged: true });
  await streaming(pitr, spec);
  const floorMs: number[] = [];
  const driverMs: number[] = [];
  await repeat(plan.pitrRounds, ROUNDS_BUDGET_MS, async (round) => {
    // Each round from a base backup of the current generation (a recovery starts a new one).
    const generation = (await streaming(pitr, spec)).id;
    const base = await baseBackupFile(direct, pitr, spec, `pitr-${round}`);
    const client = await appClient(direct, spec);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS marks (round int)`);
      await client.query("INSERT INTO marks VALUES ($1)", [round]);
    } finally {
      await client.end().catch(() => undefined);
    }
    const target = await pitr.flushWal(spec);
    floorMs.push((await timed(() => byHand(binaries, direct, spec, generation, base, target))).ms);
    driverMs.push((await timed(() => pitr.recover(spec, createReadStream(base), { source: spec, generation, time: target }))).ms);
    await rm(base, { force: true });
  });
  await direct.runtime.remove(spec, { keepData: false });
  const floor = summarize(floorMs);
  const driver = summarize(driverMs);
  const ratio = driver.median / floor.median;
  return [
    {
      id: "9b",
      name: `point-in-time restore of a ${mb(sizeBytes)} database by hand: tar -x of the base backup, cp of the WAL, postgres in recovery to the target until it promotes (floor), n=${floor.n}`,
      median: ms(floor.median),
      p95: ms(floor.p95),
      ratio: `${times(1)}`,
      goal: "reference",
      met: NONE,
    },
    {
      id: "9c",
      name: `point-in-time restore of the same database and target by the driver (runtime.pitr.recover, in place, behind the same pooler, new WAL generation), n=${driver.n}`,
      median: ms(driver.median),
      p95: ms(driver.p95),
      ratio: `${times(ratio)} floor`,
      goal: "≤ 1.5× floor",
      met: verdict(ratio <= 1.5),
    },
  ];
}

async function idleWalRows(plan: Plan, direct: DirectRuntime, pitr: PointInTimeRecovery): Promise<Row[]> {
  const spec = newSpec("bench-idle");
  await direct.runtime.ensure(spec);
  const generation = await streaming(pitr, spec);
  const paths = instancePaths(direct.dataDir, spec.slug);
  const lsn = async (): Promise<bigint> => {
    const rows = await direct.runtime.adminQuery(spec, "SELECT (pg_current_wal_lsn() - '0/0')::text AS at");
    return BigInt(rows[0]?.["at"] ?? "0");
  };
  // Settle: a new database's first minutes are not its idle cost. Its own
  // set-up, and autovacuum's first ANALYZE of each database's catalogs (a
  // copy of the template has none), write WAL once. Settled once 10 s pass
  // with no WAL written (bounded); what that took is reported beside.
  const created = await lsn();
  const settleUntil = Date.now() + plan.idleWalSettleSeconds * 1000;
  for (let last = await lsn(); Date.now() < settleUntil; ) {
    await sleep(10_000);
    const now = await lsn();
    if (now === last) break;
    last = now;
  }
  const diskBefore = await treeBytes(join(paths.walDir, generation.id));
  const before = await lsn();
  const settling = Number(before - created);
  const started = Date.now();
  await sleep(plan.idleWalSeconds * 1000);
  const written = Number((await lsn()) - before);
  const elapsed = Date.now() - started;
  const diskAfter = await treeBytes(join(paths.walDir, generation.id));
  await direct.runtime.remove(spec, { keepData: false });
  const perDay = (written / elapsed) * DAY_MS;
  return [
    {
      id: "9d",
      name: `WAL streamed for an idle database, per day (${mb(written)} over ${Math.round(elapsed / 1000)} s once settled, scaled; its first minutes wrote ${mb(settling)} once; the archive holds ${mb(diskAfter)} on disk, ${mb(diskAfter - diskBefore)} more than at the start; archive_timeout = 60 s would ship ${mb(ARCHIVE_TIMEOUT_SEGMENTS_PER_DAY * SEGMENT_BYTES)} a day)`,
      median: `${mb(perDay)}/day`,
      p95: NONE,
      ratio: NONE,
      goal: "almost no disk: ≤ 1 segment (16 MiB) a day",
      met: verdict(perDay <= SEGMENT_BYTES),
    },
  ];
}

/** The generation once pg_receivewal streams into it. */
async function streaming(pitr: PointInTimeRecovery, target: RuntimeTarget) {
  const until = Date.now() + STREAMING_WITHIN_MS;
  for (;;) {
    const current = (await pitr.walGenerations(target)).at(-1);
    if (current?.streaming) return current;
    if (Date.now() > until) throw new Error(`no WAL generation of ${target.slug} streams after ${STREAMING_WITHIN_MS} ms`);
    await sleep(100);
  }
}

/** A base backup as an uncompressed tar file the instance's OS user can read (the floor unpacks it as that user). */
async function baseBackupFile(direct: DirectRuntime, pitr: PointInTimeRecovery, spec: DatabaseSpec, name: string): Promise<string> {
  const dir = join(direct.dataDir, "bench-base");
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  const file = join(dir, `${name}.tar`);
  const { stream, info } = pitr.baseBackup(spec);
  await pipeline(stream, createWriteStream(file, { mode: 0o644 }));
  await info;
  return file;
}

async function appClient(direct: DirectRuntime, spec: DatabaseSpec): Promise<pg.Client> {
  const client = new pg.Client({ host: instancePaths(direct.dataDir, spec.slug).socketDir, user: appRoleName(spec.slug), database: spec.slug });
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

/**
 * The floor: what an operator would type, as the database's OS user, on the
 * same base backup and archived WAL, into a directory beside the instance.
 */
async function byHand(binaries: Binaries, direct: DirectRuntime, spec: DatabaseSpec, generation: string, base: string, target: Date): Promise<void> {
  const paths = instancePaths(direct.dataDir, spec.slug);
  const owner = await stat(paths.pgdata);
  const work = join(direct.dataDir, "bench-floor");
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { mode: 0o700 });
  await chmod(work, 0o700);
  await import("node:fs/promises").then((fs) => fs.chown(work, owner.uid, owner.gid));
  const script = `set -euo pipefail
D="$1/pgdata"; S="$1/socket"; mkdir -m 700 "$D" "$S"
tar -xf "$2" -C "$D"
for f in "$3"/*; do n=$(basename "$f"); cp "$f" "$D/pg_wal/\${n%.partial}"; done
printf '' > "$1/empty.conf"; printf 'local all all trust\\n' > "$1/hba.conf"
touch "$D/recovery.signal"
"$5/pg_ctl" -D "$D" -w -t 3600 -l "$1/log" -o "-c config_file=$1/empty.conf -c hba_file=$1/hba.conf -c listen_addresses='' -c unix_socket_directories=$S -p $6 -c restore_command=false -c recovery_target_time='$4' -c recovery_target_action=promote" start || { tail -5 "$1/log" >&2; exit 1; }
until [ "$("$5/psql" -h "$S" -p "$6" -U postgres -d postgres -XAtc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.05; done
"$5/pg_ctl" -D "$D" -m fast -w stop`;
  try {
    await runAs(owner.uid, owner.gid, ["bash", "-c", script, "bash", work, base, join(paths.walDir, generation), target.toISOString().replace("T", " ").replace("Z", "+00"), binaries.postgres.binDir, String(FLOOR_PORT)]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function runAs(uid: number, gid: number, argv: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { uid, gid, cwd: "/", stdio: ["ignore", "ignore", "pipe"], env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" } });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`the by-hand restore failed (exit ${String(code)}): ${stderr.trim()}`))));
  });
}

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    total += (await stat(join(dir, name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
