// Ensure's last step: the project's WAL streams into its archive. PostgreSQL
// gets what a receiver needs (a replication role with the receiver's
// password, one pg_hba.conf line letting that role replicate from the private
// network, the slot, a bound on the WAL the slot may hold), and the receiver
// container runs for the current generation.
//
// When does a new generation begin? Whenever the slot is missing or lost:
// the WAL since the receiver last flushed may then be gone (a recovered or
// re-initialised cluster, a slot a tenant dropped, a receiver down for longer
// than max_slot_wal_keep_size allows), so the archive cannot go on in the
// same directory. A base backup taken afterwards starts the new generation's
// usefulness. The old receiver is removed before the new slot exists, so it
// never writes the new cluster's WAL into the old directory.
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type Docker from "dockerode";
import pg from "pg";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import { verifierToHold } from "../shared/app-role.js";
import { isRunning, type DockerEngine } from "./docker-engine.js";
import type { ProjectNames } from "./docker-names.js";
import { CONNECT_TIMEOUT_ENV, PG_OS_USER, runSuperuserScript, superuserQuery } from "./postgres-container.js";
import { superuserConninfo } from "./app-role-sql.js";
import { lastLine } from "./psql-messages.js";
import { prepareArchive } from "./wal-archive.js";
import { nextGenerationId, WAL_ROLE, WAL_SLOT } from "./wal-names.js";
import {
  createReceiver,
  inspectReceiver,
  receiverGeneration,
  receiverMatches,
  receiverPassword,
  removeReceiver,
  type ReceiverWanted,
} from "./wal-receiver.js";

/** The one pg_hba.conf line sota-db adds: SCRAM, the replication role only, the private network only. */
export const WAL_HBA_LINE = `host replication ${WAL_ROLE} samenet scram-sha-256`;

/** Appends the line to the server's hba_file unless it is there; prints "added" when it was not. */
const HBA_SCRIPT = `f=$(psql -X -A -t -q --no-password -c 'SHOW hba_file' --dbname "$1") || exit 1
[ -n "$f" ] || exit 1
grep -qxF "$2" "$f" && exit 0
printf '\\n# sota-db: the WAL receiver (pg_receivewal) streams from the private network\\n%s\\n' "$2" >> "$f" || exit 1
echo added`;

export interface WalSetup {
  /** Bound on the WAL the slot may hold for a receiver that is down (max_slot_wal_keep_size), in MB. */
  readonly slotKeepMb: number;
}

export interface WalSetupTarget {
  readonly engine: DockerEngine;
  readonly target: RuntimeTarget;
  readonly names: ProjectNames;
  readonly postgres: Docker.Container;
  /** The image id PostgreSQL runs: the receiver and helpers run the same. */
  readonly image: string;
  readonly privateNetworkId: string;
}

/**
 * Makes the project's WAL stream into its archive; answers the generation it
 * streams into. Runs after ensure has returned (see DockerRuntime), so
 * another service process may be doing the same: the receiver container is
 * the one source of truth, its generation and password are whatever the
 * container that won the name says, and an old receiver is removed by its id
 * only, never a newer one made meanwhile.
 */
export async function ensureWalArchive(at: WalSetupTarget, setup: WalSetup): Promise<string> {
  const { engine, target, names } = at;
  const receiver = await inspectReceiver(engine, target, names);
  const state = await preparePostgres(at, setup);

  let generation = receiverGeneration(receiver);
  let found = receiver;
  if (state.slot !== "ok" || !generation) {
    // A receiver of another slot's WAL must stop before a new slot exists.
    if (receiver && state.slot !== "ok") {
      await removeReceiver(engine, names, receiver.Id);
      found = undefined;
    }
    const fresh = state.slot !== "ok" && (await createSlot(at, state.slot === "lost"));
    if (state.slot !== "ok" && !fresh) {
      // Another service process made the slot a moment ago, and makes the
      // generation and the receiver that go with it: theirs is taken, so that
      // two processes never open two generations for one slot.
      const theirs = await receiverOfOthers(at);
      if (theirs) return theirs;
    }
    // A slot that survived its receiver (removed by hand, or with the data
    // kept) continues the newest generation; a new slot begins a new one.
    generation = await prepareArchive(engine, target, names, at.image, (existing) =>
      fresh ? nextGenerationId(existing) : (existing.at(-1) ?? nextGenerationId(existing)),
    );
    if (fresh) engine.logger.info({ slug: target.slug, generation }, "new WAL generation");
  }
  const password = receiverPassword(found) ?? randomBytes(24).toString("hex");
  const wanted = { image: at.image, privateNetworkId: at.privateNetworkId, generation, password };
  const running = await runReceiver(at, wanted, found, (made) => setWalPassword(at, receiverPassword(made), state.verifier));
  return receiverGeneration(running) ?? generation;
}

/**
 * Starts the receiver `wanted` describes, replacing one made otherwise
 * (another image, network, generation or password); `beforeStart` sees the
 * container that will run (whoever made it) before it starts.
 */
export async function runReceiver(
  at: Pick<WalSetupTarget, "engine" | "target" | "names">,
  wanted: ReceiverWanted,
  found: Docker.ContainerInspectInfo | undefined,
  beforeStart: (info: Docker.ContainerInspectInfo) => Promise<void> = async () => undefined,
): Promise<Docker.ContainerInspectInfo> {
  const { engine, target, names } = at;
  let info = found;
  if (info && !receiverMatches(info, wanted)) {
    await removeReceiver(engine, names, info.Id);
    info = undefined;
  }
  info ??= await createReceiver(engine, target, names, wanted);
  await beforeStart(info);
  if (!isRunning(info)) await engine.startContainer(engine.docker.getContainer(info.Id), names.walReceiver);
  return info;
}

/** The replication role's verifier, for the receiver's password (kept when it already matches). */
async function setWalPassword(at: WalSetupTarget, password: string | undefined, current: string | null): Promise<void> {
  if (!password) throw new RuntimeError("failed", `container ${at.names.walReceiver} has no password for the replication role`);
  const verifier = verifierToHold(password, current);
  if (verifier === current) return;
  await runSuperuserScript(at.engine, at.postgres, `setting the replication role's password in ${at.names.postgres}`, [
    `ALTER ROLE ${pg.escapeIdentifier(WAL_ROLE)} PASSWORD ${pg.escapeLiteral(verifier)};`,
  ]);
}

type SlotState = "ok" | "missing" | "lost";

interface PostgresState {
  readonly slot: SlotState;
  /** The replication role's verifier now. */
  readonly verifier: string | null;
}

/**
 * The replication role and its attributes, the slot's bound and the
 * pg_hba.conf line, each changed only when it differs (a tenant that became
 * superuser may have changed any of them); the role's password is set once
 * the receiver is known (setWalPassword). Answers the slot's state.
 */
async function preparePostgres(at: WalSetupTarget, setup: WalSetup): Promise<PostgresState> {
  const { engine, postgres, names } = at;
  const [state] = await superuserQuery(engine, postgres, stateQuery(), "postgres");
  if (!state) throw new RuntimeError("failed", `reading the WAL settings of ${names.postgres} returned nothing`);
  if (state["wal_level"] === "minimal") {
    throw new RuntimeError("failed", `${names.postgres} runs with wal_level = minimal: its WAL cannot be archived`);
  }
  const role = pg.escapeIdentifier(WAL_ROLE);
  const statements: string[] = [];
  if (state["role_exists"] !== "true") {
    statements.push(`DO $sota$ BEGIN CREATE ROLE ${role} LOGIN REPLICATION; EXCEPTION WHEN duplicate_object THEN NULL; END $sota$;`);
  }
  if (state["role_exists"] !== "true" || state["role_ok"] !== "true") {
    statements.push(`ALTER ROLE ${role} LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS CONNECTION LIMIT 3;`);
  }
  if (state["keep_mb"] !== String(setup.slotKeepMb)) {
    statements.push(`ALTER SYSTEM SET max_slot_wal_keep_size = ${pg.escapeLiteral(`${setup.slotKeepMb}MB`)};`);
  }
  const hba = await engine.exec(postgres, `adding the WAL receiver's line to ${names.postgres}'s pg_hba.conf`, {
    cmd: ["sh", "-c", HBA_SCRIPT, "sh", superuserConninfo("postgres"), WAL_HBA_LINE],
    user: PG_OS_USER,
    env: [CONNECT_TIMEOUT_ENV],
  });
  if (hba.exitCode !== 0) throw new RuntimeError("failed", `adding the WAL receiver's line to ${names.postgres}'s pg_hba.conf failed${lastLine(hba.stderr)}`);
  if (statements.length > 0 || hba.stdout.includes("added")) statements.push("SELECT pg_reload_conf();");
  if (statements.length > 0) await runSuperuserScript(engine, postgres, `setting up WAL archiving in ${names.postgres}`, statements);
  const slot = state["slot"];
  return {
    slot: slot === null || slot === undefined ? "missing" : slot === "lost" ? "lost" : "ok",
    verifier: state["role_password"] ?? null,
  };
}

/** Makes the slot; answers whether this call made it (false: another process did meanwhile). */
async function createSlot(at: WalSetupTarget, dropFirst: boolean): Promise<boolean> {
  const slot = pg.escapeLiteral(WAL_SLOT);
  if (dropFirst) {
    await runSuperuserScript(at.engine, at.postgres, `dropping the lost WAL slot in ${at.names.postgres}`, [
      `SELECT pg_drop_replication_slot(${slot}) FROM pg_replication_slots WHERE slot_name = ${slot};`,
    ]);
  }
  // Reserved at once: WAL from this moment on stays until the receiver has it.
  // The function's answer says who made it: a slot made meanwhile is not ours.
  const [made] = await superuserQuery(
    at.engine,
    at.postgres,
    `SELECT count(*)::text AS made FROM (
       SELECT pg_create_physical_replication_slot(${slot}, true)
        WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = ${slot})) AS created;`,
    "postgres",
  ).catch((error: unknown) => {
    // Two processes past the NOT EXISTS at once: the second's create fails.
    if (error instanceof RuntimeError && /already exists/.test(error.message)) return [{ made: "0" }];
    throw error;
  });
  return made?.["made"] === "1";
}

const OTHERS_RECEIVER_WAIT_MS = 15_000;

/** The generation the receiver another process is making streams into, once it exists (bounded); undefined if none came. */
async function receiverOfOthers(at: WalSetupTarget): Promise<string | undefined> {
  const until = Date.now() + OTHERS_RECEIVER_WAIT_MS;
  while (Date.now() < until) {
    const generation = receiverGeneration(await inspectReceiver(at.engine, at.target, at.names));
    if (generation) return generation;
    await sleep(200);
  }
  return undefined;
}

function stateQuery(): string {
  const role = pg.escapeLiteral(WAL_ROLE);
  const slot = pg.escapeLiteral(WAL_SLOT);
  return `SELECT
  (SELECT count(*) > 0 FROM pg_authid WHERE rolname = ${role})::text AS role_exists,
  (SELECT rolcanlogin AND rolreplication AND NOT (rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls)
     FROM pg_authid WHERE rolname = ${role})::text AS role_ok,
  (SELECT rolpassword FROM pg_authid WHERE rolname = ${role}) AS role_password,
  (SELECT CASE WHEN wal_status = 'lost' THEN 'lost' ELSE 'ok' END FROM pg_replication_slots WHERE slot_name = ${slot} AND slot_type = 'physical') AS slot,
  (SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size') AS keep_mb,
  current_setting('wal_level') AS wal_level;
`;
}
