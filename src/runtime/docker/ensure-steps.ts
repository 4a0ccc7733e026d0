// Ensure, step by step. Each step finds what a previous run left, so an ensure
// cut short anywhere is finished by the next one; conflicts are found before
// anything is created. Steps that do not depend on each other run at once:
// PgBouncer is created and started while PostgreSQL comes up.
import type Docker from "dockerode";
import { createScramVerifier } from "../shared/scram-secret.js";
import { dataLost, RuntimeError, type DatabaseSpec, type EnsureResult, type PoolerInfo } from "../runtime.js";
import { isRunning, neverStarted, type DockerEngine } from "./docker-engine.js";
import type { ProjectNames } from "./docker-names.js";
import { createProjectVolume, projectVolumeExists } from "./docker-volumes.js";
import { endpointOf, type DriverSettings } from "./driver-settings.js";
import type { ImagePuller } from "./image-puller.js";
import {
  consoleQuery,
  ensurePgbouncerContainer,
  poolerInfoOf,
  queryThroughPooler,
  startOrReloadPgbouncer,
  writePgbouncerFiles,
  type NetworkIds,
} from "./pgbouncer-container.js";
import type { PgbouncerImageFacts, PgbouncerImageFactsCache } from "./pgbouncer-image-facts.js";
import { ensureAppRole, ensurePostgresContainer, setUpFromTemplate, waitUntilAccepting } from "./postgres-container.js";
import type { PostgresTemplates, SeedOutcome } from "./postgres-template.js";
import type { ProjectNetworks } from "./project-networks.js";
import { surveyContainers, type Survey } from "./project-survey.js";
import { lastLine } from "./psql-messages.js";
import { waitFor } from "./wait-for.js";
import type { WalSetupTarget } from "./wal-setup.js";

export interface EnsureParts {
  readonly engine: DockerEngine;
  readonly settings: DriverSettings;
  readonly images: ImagePuller;
  readonly networks: ProjectNetworks;
  readonly templates: PostgresTemplates;
  readonly pgbouncerFacts: PgbouncerImageFactsCache;
}

interface Deadline {
  readonly at: number;
  readonly timeoutMs: number;
}

/** PgBouncer as the second branch leaves it: the verifier it was given, if it was (re)started with one. */
interface PgbouncerBranch {
  readonly container: Docker.Container;
  readonly facts: PgbouncerImageFacts;
  readonly startedWith: string | undefined;
}

/** What ensure leaves: the database serving, and where its WAL receiver is to be set up (walSetupOf). */
export interface ProjectEnsured {
  readonly result: EnsureResult;
  readonly wal: WalSetupTarget;
}

export async function ensureProject(
  parts: EnsureParts,
  spec: DatabaseSpec,
  names: ProjectNames,
  signal: AbortSignal | undefined,
): Promise<ProjectEnsured> {
  const { engine, settings } = parts;
  signal?.throwIfAborted();
  const started = Date.now();
  await engine.ping();
  await Promise.all([parts.images.ensure(settings.postgresImage), parts.images.ensure(settings.pgbouncerImage)]);
  signal?.throwIfAborted();

  const [survey, , volumeExists] = await Promise.all([
    surveyContainers(engine, spec, names),
    parts.networks.checkOwned(spec, names),
    projectVolumeExists(engine, spec, names),
  ]);

  const [networks, facts, seed] = await allSettled([
    parts.networks.ensure(spec, names),
    parts.pgbouncerFacts.get(spec),
    prepareVolume(parts, spec, names, survey, volumeExists, signal),
  ] as const);

  const postgresInfo = await ensurePostgresContainer(
    engine,
    spec,
    names,
    settings,
    survey.postgres,
    networks.private,
  );
  signal?.throwIfAborted();
  const postgres = engine.docker.getContainer(postgresInfo.Id);
  const deadline = { at: Date.now() + settings.readyTimeoutMs, timeoutMs: settings.readyTimeoutMs };
  // A verifier made here lets PgBouncer start with its userlist before
  // PostgreSQL is up; PostgreSQL takes it unless it already holds one that
  // matches the password.
  const proposed = createScramVerifier(spec.password);
  const [verifier, pgbouncer] = await allSettled([
    (async () => {
      if (!isRunning(postgresInfo)) await engine.startContainer(postgres, names.postgres);
      if (seed === "copied") {
        const verifier = await setUpFromTemplate(engine, postgres, names, spec.password, proposed);
        if (verifier) return verifier;
      }
      await waitUntilAccepting(engine, postgres, names.postgres, deadline, signal);
      return ensureAppRole(engine, postgres, names, spec.password, proposed, spec.mustExist);
    })(),
    startPgbouncer(parts, spec, names, survey, networks, facts, proposed, signal),
  ] as const);
  signal?.throwIfAborted();
  if (pgbouncer.startedWith !== verifier) {
    await writePgbouncerFiles(engine, pgbouncer.container, names, verifier, facts);
    await startOrReloadPgbouncer(engine, pgbouncer.container, names);
  }

  const [postgresVersion, pooler, info] = await allSettled([
    firstPooledQuery(parts, spec, names, postgres, pgbouncer, deadline, signal),
    settledPoolerInfo(engine, pgbouncer, names, deadline, signal),
    engine.inspectContainer(names.pgbouncer),
  ] as const);
  if (!info) throw new RuntimeError("failed", `container ${names.pgbouncer} disappeared while starting`);
  const endpoint = endpointOf(settings, spec, info);
  engine.logger.info(
    { slug: spec.slug, projectId: spec.projectId, network: endpoint.network, ms: Date.now() - started },
    "database ready",
  );
  return {
    result: { endpoint, postgresVersion, pooler },
    wal: { engine, target: spec, names, postgres, image: postgresInfo.Image, privateNetworkId: networks.private },
  };
}

/**
 * The data volume, filled from the template while PostgreSQL's container is
 * still to be made (or was made but never ran): a volume it has started on
 * is never written to.
 */
async function prepareVolume(
  parts: EnsureParts,
  spec: DatabaseSpec,
  names: ProjectNames,
  survey: Survey,
  volumeExists: boolean,
  signal: AbortSignal | undefined,
): Promise<SeedOutcome | undefined> {
  if (!volumeExists) {
    if (spec.mustExist) throw dataLost(spec.slug, `its volume ${names.volume} is gone`);
    await createProjectVolume(parts.engine, spec, names);
  }
  signal?.throwIfAborted();
  if (!survey.postgres || neverStarted(survey.postgres)) return parts.templates.seed(spec, names, signal);
  return undefined;
}

/** A new or stopped PgBouncer gets its files and starts; a running one is left for the caller to reload. */
async function startPgbouncer(
  parts: EnsureParts,
  spec: DatabaseSpec,
  names: ProjectNames,
  survey: Survey,
  networks: NetworkIds,
  facts: PgbouncerImageFacts,
  proposed: string,
  signal: AbortSignal | undefined,
): Promise<PgbouncerBranch> {
  const { engine } = parts;
  const info = await ensurePgbouncerContainer(engine, parts.settings, spec, names, survey.pgbouncer, networks, facts.user);
  signal?.throwIfAborted();
  const container = engine.docker.getContainer(info.Id);
  if (isRunning(info)) return { container, facts, startedWith: undefined };
  await writePgbouncerFiles(engine, container, names, proposed, facts);
  await startOrReloadPgbouncer(engine, container, names);
  return { container, facts, startedWith: proposed };
}

async function firstPooledQuery(
  parts: EnsureParts,
  spec: DatabaseSpec,
  names: ProjectNames,
  postgres: Docker.Container,
  pgbouncer: PgbouncerBranch,
  deadline: Deadline,
  signal: AbortSignal | undefined,
): Promise<string> {
  const { engine } = parts;
  let lastProblem = "";
  return waitFor(engine, {
    deadline: deadline.at,
    timeoutMs: deadline.timeoutMs,
    signal,
    what: `a query through PgBouncer (${names.pgbouncer})`,
    containerName: names.pgbouncer,
    attempt: async () => {
      const result = await queryThroughPooler(engine, pgbouncer.container, names, spec.password);
      if (result.exitCode === 0) return result.stdout.trim();
      lastProblem = lastLine(result.stderr);
      if (/authentication failed/i.test(result.stderr)) {
        // Another service process ensuring the same project at the same
        // time may have set another verifier of the same password, or
        // written its files after PgBouncer read them: PgBouncer must hold
        // exactly PostgreSQL's verifier.
        const verifier = await ensureAppRole(engine, postgres, names, spec.password);
        await writePgbouncerFiles(engine, pgbouncer.container, names, verifier, pgbouncer.facts);
        await startOrReloadPgbouncer(engine, pgbouncer.container, names);
      }
      return undefined;
    },
    lastProblem: () => lastProblem,
  });
}

/** The settings PgBouncer runs with, read back from its console once that answers. */
async function settledPoolerInfo(
  engine: DockerEngine,
  pgbouncer: PgbouncerBranch,
  names: ProjectNames,
  deadline: Deadline,
  signal: AbortSignal | undefined,
): Promise<PoolerInfo> {
  const config = await waitFor(engine, {
    deadline: deadline.at,
    timeoutMs: deadline.timeoutMs,
    signal,
    what: `PgBouncer's console in ${names.pgbouncer}`,
    containerName: names.pgbouncer,
    attempt: () =>
      consoleQuery(engine, pgbouncer.container, "SHOW CONFIG").catch((error: unknown) => {
        // Not answering yet: PgBouncer started a moment ago.
        if (error instanceof RuntimeError && error.reason === "failed") return undefined;
        throw error;
      }),
  });
  return poolerInfoOf(config, pgbouncer.facts.version);
}

type Settled<T extends readonly unknown[]> = { -readonly [K in keyof T]: Awaited<T[K]> };

/**
 * Like Promise.all, but only once every branch has ended: a failed branch
 * must not leave the other still working after the ensure has returned (and
 * released the project's lock).
 */
async function allSettled<T extends readonly unknown[]>(branches: T): Promise<Settled<T>> {
  const outcomes = await Promise.allSettled(branches);
  const failed = outcomes.find((outcome) => outcome.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return outcomes.map((outcome) => (outcome as PromiseFulfilledResult<unknown>).value) as Settled<T>;
}
