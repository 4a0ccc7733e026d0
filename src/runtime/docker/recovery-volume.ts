// What a recovery does inside the data volume, from a helper container that
// mounts it (at PGDATA) and the source's WAL archive (read-only), always as
// the image's postgres user: a base backup is tenant data (a tenant that
// became superuser may have planted links in it), so nothing here runs as
// root but the one chown of a fresh volume's root, and the helper holds no
// other volume a link could lead into.
//
// A volume cannot be renamed, so the previous cluster is moved aside inside
// its own volume (renames, instant whatever the size), never copied:
//   .sota-restoring/  the base backup, its WAL and recovery settings, built first;
//   .sota-previous/   the cluster being replaced, PG_VERSION moved first, then
//                     marked complete (.sota-complete) once all of it is there;
//   the root          then takes .sota-restoring's entries, PG_VERSION last.
// The image's entrypoint never starts a root without PG_VERSION as a
// cluster, and the marker says which side of the swap a cut-short one was
// on, so a later recovery can always put the previous cluster back
// (restore_previous) or, once the swap had finished, drop it.
import type { Readable } from "node:stream";
import type Docker from "dockerode";
import { DomainError } from "../../errors.js";
import { RuntimeError, type WalSource } from "../runtime.js";
import type { DockerEngine } from "./docker-engine.js";
import { PGDATA, WAL_ARCHIVE_DIR } from "./docker-names.js";
import { PG_OS_USER } from "./postgres-container.js";
import { lastLine } from "./psql-messages.js";
import type { ArchiveListing } from "./wal-archive.js";
import { HISTORY, SEGMENT } from "./wal-names.js";

const PREVIOUS = ".sota-previous";
const RESTORING = ".sota-restoring";
const FAILED = ".sota-failed";
const COMPLETE = ".sota-complete";
const NOT_A_BASE_BACKUP = 12;
const VANISHED = 13;

/** Shell functions every script below starts with; run with the data volume as the working directory. */
const COMMON = `set -u
cd ${PGDATA} || exit 1
P=${PREVIOUS}; R=${RESTORING}; F=${FAILED}
# Moves the entries of directory $1 into $2 (renames only), but ours and $3.
move_entries() {
  for e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case "\${e##*/}" in ${PREVIOUS}|${RESTORING}|${FAILED}|${COMPLETE}) continue;; esac
    [ "\${e##*/}" = "\${3:-}" ] && continue
    mv -- "$e" "$2"/ || return 1
  done
}
# Puts the previous cluster back at the root, whatever part of a swap was done.
restore_previous() {
  if [ -f "$P/${COMPLETE}" ]; then
    mkdir -p "$F" && move_entries . "$F" || return 1
  fi
  rm -f "$P/${COMPLETE}"
  move_entries "$P" . || return 1
  rmdir "$P" && rm -rf "$F"
}
# Links under our own names are not ours: removed (the link, never its target).
for d in "$P" "$R" "$F"; do [ ! -L "$d" ] || rm -f "$d"; done`;

/** Leftovers of a recovery that was cut short: a finished swap keeps the new cluster, any other the previous one. */
const SETTLE_SCRIPT = `${COMMON}
if [ -d "$P" ]; then
  if [ -f "$P/${COMPLETE}" ] && [ -s PG_VERSION ] && [ ! -e "$R" ]; then rm -rf "$P" || exit 1
  else restore_previous || exit 1; fi
fi
rm -rf "$R" "$F"`;

/** The base backup (tar on stdin) into .sota-restoring; refused unless it is one. */
const EXTRACT_SCRIPT = `${COMMON}
mkdir "$R" || exit 1
tar -x -f - -C "$R" --no-same-owner || exit ${NOT_A_BASE_BACKUP}
rm -rf "$R/$P" "$R/$R" "$R/$F"
[ -s "$R/PG_VERSION" ] && [ -f "$R/backup_label" ] && [ ! -L "$R/backup_label" ] || exit ${NOT_A_BASE_BACKUP}
[ -d "$R/pg_wal" ] && [ ! -L "$R/pg_wal" ] || exit ${NOT_A_BASE_BACKUP}`;

/** The first segment the backup needs, from its backup_label. */
const START_SEGMENT_SCRIPT = `${COMMON}
sed -n 's/^START WAL LOCATION: .*(file \\([0-9A-F]\\{24\\}\\))$/\\1/p' "$R/backup_label" | head -n 1`;

/** Copies archived files (lines "{file in generation} {name in pg_wal}" on stdin) into the backup's pg_wal. */
const COPY_WAL_SCRIPT = `${COMMON}
src=${WAL_ARCHIVE_DIR}/$1
[ -d "$src" ] && [ ! -L "$src" ] || exit ${VANISHED}
while read -r from to; do
  [ -n "$from" ] || continue
  [ -f "$src/$from" ] && [ ! -L "$src/$from" ] || exit ${VANISHED}
  rm -f -- "$R/pg_wal/$to.sota-copy"
  cp -- "$src/$from" "$R/pg_wal/$to.sota-copy" || exit ${VANISHED}
  mv -f -- "$R/pg_wal/$to.sota-copy" "$R/pg_wal/$to" || exit 1
done`;

/** One WAL file from elsewhere (RecoveryTarget.wal) on stdin, into the backup's pg_wal under the name $1 (checked: a WAL file's name). */
const STREAM_WAL_SCRIPT = `${COMMON}
to="$R/pg_wal/$1"
rm -f -- "$to.sota-copy"
cat > "$to.sota-copy" || exit 1
mv -f -- "$to.sota-copy" "$to"`;

/**
 * Replays pg_wal only (restore_command 'false': there is nothing else to
 * fetch), to the target time if there is one, then promotes. Removed from
 * postgresql.auto.conf once the server is promoted (resetRecoverySettings).
 */
const CONFIGURE_SCRIPT = `${COMMON}
cd "$R" || exit 1
[ ! -L postgresql.auto.conf ] || exit ${NOT_A_BASE_BACKUP}
rm -f standby.signal recovery.signal postmaster.pid postmaster.opts
{
  printf '\\n# sota-db: point-in-time recovery (removed once the server is promoted)\\n'
  printf "restore_command = 'false'\\n"
  printf "recovery_target_timeline = 'latest'\\n"
  printf "recovery_target_action = 'promote'\\n"
  [ -z "\${1:-}" ] || printf "recovery_target_time = '%s'\\n" "$1"
} >> postgresql.auto.conf || exit 1
: > recovery.signal`;

/** The swap: the previous cluster aside (PG_VERSION first), then the new one in (PG_VERSION last). */
const SWAP_SCRIPT = `${COMMON}
[ -d "$R" ] && [ -s "$R/PG_VERSION" ] || exit 1
mkdir "$P" || exit 1
[ ! -e PG_VERSION ] || mv -- PG_VERSION "$P"/ || exit 1
move_entries . "$P" || exit 1
: > "$P/${COMPLETE}" || exit 1
move_entries "$R" . PG_VERSION || exit 1
mv -- "$R/PG_VERSION" . && rmdir "$R"`;

/** After a failed recovery: the previous cluster back at the root. */
const UNDO_SCRIPT = `${COMMON}
if [ -d "$P" ]; then restore_previous || exit 1; fi
rm -rf "$R" "$F"`;

/** A fresh volume's root belongs to root: handed to postgres, 0700 as PostgreSQL wants its data directory. */
const CLAIM_ROOT_SCRIPT = `d=${PGDATA}
[ "$(stat -c %u "$d")" = "$(id -u ${PG_OS_USER})" ] && exit 0
chmod 700 "$d" && chown ${PG_OS_USER}: "$d"`;

/**
 * Removes the previous cluster once the recovered one serves (run in the
 * PostgreSQL container as postgres: inside the tenant's own data directory,
 * with no more than the tenant's rights). Prints "dropped" when there was one.
 */
const DROP_PREVIOUS_SCRIPT = `cd ${PGDATA} || exit 1
if [ -L ${PREVIOUS} ]; then rm -f ${PREVIOUS}; exit 0; fi
[ -d ${PREVIOUS} ] || exit 0
rm -rf ${PREVIOUS} && echo dropped`;

/**
 * The previous cluster of a committed recovery (no recovery marker is left),
 * dropped once PostgreSQL serves the recovered one. A failure is only logged:
 * the next ensure, or the next recovery's settling, drops it.
 */
export async function dropRecoveryLeftovers(engine: DockerEngine, postgres: Docker.Container): Promise<void> {
  const outcome = await engine.tryExec(postgres, { cmd: ["sh", "-c", DROP_PREVIOUS_SCRIPT], user: PG_OS_USER }).catch(() => undefined);
  if (outcome?.exitCode !== 0) {
    engine.logger.warn({ container: postgres.id }, "could not remove the cluster a recovery replaced; the next ensure removes it");
  } else if (outcome.stdout.includes("dropped")) {
    engine.logger.info({ container: postgres.id }, "removed the cluster a recovery replaced");
  }
}

export class RecoveryVolume {
  constructor(
    private readonly engine: DockerEngine,
    private readonly helper: Docker.Container,
    /** For messages: the data volume's name. */
    private readonly volume: string,
  ) {}

  /** Hands the root to postgres when needed, and clears what a cut-short recovery left. */
  async prepare(): Promise<void> {
    await this.run("root", "preparing", CLAIM_ROOT_SCRIPT);
    await this.run(PG_OS_USER, "clearing an earlier recovery's leftovers in", SETTLE_SCRIPT);
  }

  async extract(base: Readable): Promise<void> {
    const outcome = await this.engine.exec(
      this.helper,
      `extracting the base backup into ${this.volume}`,
      { cmd: ["sh", "-c", EXTRACT_SCRIPT], user: PG_OS_USER, stdin: base },
      { discardStdout: true },
    );
    if (outcome.stdinError) {
      throw new RuntimeError("failed", `the base backup stream broke off while it was extracted into ${this.volume}`, { cause: outcome.stdinError });
    }
    if (outcome.exitCode === NOT_A_BASE_BACKUP) throw new RuntimeError("failed", "the stream is not a base backup (pg_basebackup's tar format)");
    if (outcome.exitCode !== 0) throw new RuntimeError("failed", `extracting the base backup into ${this.volume} failed${lastLine(outcome.stderr)}`);
  }

  async startSegment(): Promise<string> {
    const outcome = await this.run(PG_OS_USER, "reading the base backup's label in", START_SEGMENT_SCRIPT);
    const start = outcome.trim();
    if (!SEGMENT.test(start)) throw new RuntimeError("failed", "the base backup's label names no start segment");
    return start;
  }

  /**
   * The generation's WAL from the backup's start segment on (and every
   * timeline history file) into the backup's pg_wal, a partial segment under
   * its complete name. False when a file went away meanwhile (a partial the
   * receiver completed): the caller lists again and retries.
   */
  async copyWal(generation: ArchiveListing, startSegment: string): Promise<boolean> {
    const from = startSegment.slice(8);
    const wanted = generation.segments.filter((file) => file.name.length !== 24 || file.name.slice(8) >= from);
    const complete = new Set(wanted.filter((file) => file.complete).map((file) => file.name));
    // Complete files first, then partials (only where no complete one exists): a later copy never overwrites newer WAL with older.
    const lines = [
      ...wanted.filter((file) => file.complete).map((file) => `${file.name} ${file.name}`),
      ...wanted.filter((file) => !file.complete && !complete.has(file.name)).map((file) => `${file.name}.partial ${file.name}`),
    ];
    const outcome = await this.engine.exec(this.helper, `copying WAL generation ${generation.id} into ${this.volume}`, {
      cmd: ["sh", "-c", COPY_WAL_SCRIPT, "sh", generation.id],
      user: PG_OS_USER,
      stdin: `${lines.join("\n")}\n`,
    });
    if (outcome.exitCode === VANISHED) return false;
    if (outcome.exitCode !== 0) throw new RuntimeError("failed", `copying WAL generation ${generation.id} into ${this.volume} failed${lastLine(outcome.stderr)}`);
    return true;
  }

  /**
   * WAL from another host's copy (disaster recovery): as copyWal takes the
   * archive's, each file streamed into a `cat` run as postgres. A stream that
   * fails fails the copy with its own error (a damaged copy stays data_loss).
   */
  async streamWal(source: WalSource, startSegment: string): Promise<number> {
    const from = startSegment.slice(8);
    const seen = new Set<string>();
    const wanted = [];
    for (const file of await source.files()) {
      if (!SEGMENT.test(file.name) && !HISTORY.test(file.name)) throw new RuntimeError("failed", `${JSON.stringify(file.name.slice(0, 40))} is not the name of a WAL file`);
      if (seen.has(file.name) || (SEGMENT.test(file.name) && file.name.slice(8) < from)) continue;
      seen.add(file.name);
      wanted.push(file.name);
    }
    for (const name of wanted.sort()) {
      const stream = await source.open(name);
      try {
        const outcome = await this.engine.exec(this.helper, `copying WAL file ${name} into ${this.volume}`, {
          cmd: ["sh", "-c", STREAM_WAL_SCRIPT, "sh", name],
          user: PG_OS_USER,
          stdin: stream,
        });
        if (outcome.stdinError) {
          if (outcome.stdinError instanceof DomainError) throw outcome.stdinError;
          throw new RuntimeError("failed", `WAL file ${name} broke off while it was copied into ${this.volume}`, { cause: outcome.stdinError });
        }
        if (outcome.exitCode !== 0) throw new RuntimeError("failed", `copying WAL file ${name} into ${this.volume} failed${lastLine(outcome.stderr)}`);
      } finally {
        stream.destroy();
      }
    }
    return wanted.length;
  }

  async configure(time: Date | undefined): Promise<void> {
    const outcome = await this.engine.exec(this.helper, `writing the recovery settings into ${this.volume}`, {
      cmd: ["sh", "-c", CONFIGURE_SCRIPT, "sh", time ? recoveryTargetTime(time) : ""],
      user: PG_OS_USER,
    });
    if (outcome.exitCode === NOT_A_BASE_BACKUP) throw new RuntimeError("failed", "the base backup's postgresql.auto.conf is a link; refused");
    if (outcome.exitCode !== 0) throw new RuntimeError("failed", `writing the recovery settings into ${this.volume} failed${lastLine(outcome.stderr)}`);
  }

  async swap(): Promise<void> {
    await this.run(PG_OS_USER, "moving the recovered cluster in place in", SWAP_SCRIPT);
  }

  async undo(): Promise<void> {
    await this.run(PG_OS_USER, "putting the previous cluster back in", UNDO_SCRIPT);
  }

  private async run(user: string, what: string, script: string): Promise<string> {
    const outcome = await this.engine.exec(this.helper, `${what} ${this.volume}`, { cmd: ["sh", "-c", script], user });
    if (outcome.exitCode !== 0) throw new RuntimeError("failed", `${what} ${this.volume} failed${lastLine(outcome.stderr)}`);
    return outcome.stdout;
  }
}

/** recovery_target_time's accepted form ("2026-11-30 12:00:00.123+00"; its check refuses ISO 8601's "T" and "Z"). */
export function recoveryTargetTime(time: Date): string {
  return time.toISOString().replace("T", " ").replace(/Z$/, "+00");
}
