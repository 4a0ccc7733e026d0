// A pre-initialised cluster per PostgreSQL image, copied into each new data
// volume: the image's entrypoint then finds PGDATA non-empty and skips
// initdb, its slowest step. The template is made once by the image itself
// (its own entrypoint, POSTGRES_* contract and pg_hba), shut down cleanly and
// only then marked ready; the role, database and verifiers stay per project.
import { createHash, randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type Docker from "dockerode";
import { loggableError } from "../../log.js";
import { RuntimeError, type DatabaseSpec } from "../runtime.js";
import { SUPERUSER } from "./app-role-sql.js";
import { hardenedHostConfig, POSTGRES_HARDENING, SEED_HARDENING } from "./container-hardening.js";
import { neverStarted, type DockerEngine } from "./docker-engine.js";
import { isConflict, isNotFound, toRuntimeError } from "./docker-errors.js";
import {
  LABEL_MANAGED,
  LABEL_ROLE,
  ownershipProblem,
  PGDATA,
  projectLabels,
  sharedLabels,
  type ProjectNames,
} from "./docker-names.js";
import { createVolume, volumeLabels } from "./docker-volumes.js";
import { runSuperuserScript, waitUntilAccepting } from "./postgres-container.js";
import { tarArchive } from "./tar-archive.js";

const LABEL_IMAGE = "io.sota.image";
const TEMPLATE_MOUNT = "/var/lib/sota-template";
/** Names the cluster directory inside the template volume once that cluster is complete. */
const READY_MARKER = "ready";
const TEMPLATE_NOT_READY = 3;
const HOLDS_A_CLUSTER = 4;
const BUILD_TIMEOUT_MS = 120_000;
/** A build takes seconds; one still there after this was left by a service that died during it. */
const STALE_BUILD_MS = BUILD_TIMEOUT_MS + 60_000;
/** A seed container is started right after it is created; one never started after this was abandoned. */
const ABANDONED_SEED_MS = 30_000;

/**
 * Copies the template's cluster into an empty data volume, PG_VERSION last:
 * the entrypoint takes a volume with PG_VERSION for an initialised one, so a
 * copy cut short is redone, never started. A volume holding a cluster is
 * never written to.
 */
const SEED_SCRIPT = `set -e
src="$(cat ${TEMPLATE_MOUNT}/${READY_MARKER} 2>/dev/null)" || exit ${TEMPLATE_NOT_READY}
[ -n "$src" ] && [ -s "${TEMPLATE_MOUNT}/$src/PG_VERSION" ] || exit ${TEMPLATE_NOT_READY}
cd ${PGDATA}
[ -s PG_VERSION ] && exit ${HOLDS_A_CLUSTER}
for f in "${TEMPLATE_MOUNT}/$src"/*; do [ "\${f##*/}" = PG_VERSION ] || cp -a "$f" .; done
cp -a "${TEMPLATE_MOUNT}/$src/PG_VERSION" .`;

/**
 * One template per image and per set of extra labels: a cleanup by label
 * (the tests') then never pulls a template from under another runtime.
 */
export function templateVolumeName(imageId: string, labels: Readonly<Record<string, string>>): string {
  const imageKey = imageId.replace(/^sha256:/, "").slice(0, 12);
  const extra = Object.entries(labels).sort();
  const labelKey = extra.length ? `-${createHash("sha256").update(JSON.stringify(extra)).digest("hex").slice(0, 8)}` : "";
  return `sota-db-template-${imageKey}${labelKey}`;
}

/** What the seed container found: "copied" means the volume now holds the template's cluster, untouched. */
export type SeedOutcome = "copied" | "holds-a-cluster" | "template-not-ready";

export class PostgresTemplates {
  /** Builds in flight, per template volume, so concurrent ensures wait for one. */
  private readonly builds = new Map<string, Promise<boolean>>();
  /** Templates that could not be made: their image initialises each database, for the runtime's life. */
  private readonly failed = new Set<string>();

  constructor(
    private readonly engine: DockerEngine,
    private readonly image: string,
  ) {}

  /**
   * Fills the project's new data volume from the template, and says whether
   * it did. Without a usable template the volume stays empty and the image
   * initialises it as before.
   */
  async seed(spec: DatabaseSpec, names: ProjectNames, signal: AbortSignal | undefined): Promise<SeedOutcome> {
    const template = await this.templateVolume();
    if (!template || this.failed.has(template.name)) return "template-not-ready";
    if (!template.created) {
      const outcome = await this.runSeed(spec, names, template.name);
      if (outcome !== "template-not-ready") return outcome;
    }
    signal?.throwIfAborted();
    if (!(await this.build(template.name))) return "template-not-ready";
    const outcome = await this.runSeed(spec, names, template.name);
    if (outcome === "template-not-ready") {
      this.engine.logger.warn({ volume: template.name }, "PostgreSQL template not ready; the image initialises the database");
    }
    return outcome;
  }

  /** The image's template volume, created (empty) when missing; undefined when its name is taken. */
  private async templateVolume(): Promise<{ readonly name: string; readonly created: boolean } | undefined> {
    const image = await this.engine.call(`inspecting image ${this.image}`, () =>
      this.engine.docker.getImage(this.image).inspect(),
    );
    const name = templateVolumeName(image.Id, this.engine.labels);
    const labels = await volumeLabels(this.engine, name);
    if (labels) {
      if (labels[LABEL_MANAGED] === "true" && labels[LABEL_ROLE] === "template") return { name, created: false };
      this.engine.logger.warn({ volume: name }, "volume under the template's name was not created by sota-db; not using it");
      return undefined;
    }
    await createVolume(this.engine, name, { ...sharedLabels("template", this.engine.labels), [LABEL_IMAGE]: image.Id });
    // Just made, so empty: no seed can use it before a build.
    return { name, created: true };
  }

  /**
   * The seed container's name is the project's, so two service processes
   * never copy into one volume at once: the second waits for the first.
   */
  private async runSeed(spec: DatabaseSpec, names: ProjectNames, template: string): Promise<SeedOutcome> {
    const { engine } = this;
    const until = Date.now() + BUILD_TIMEOUT_MS;
    for (;;) {
      let container: Docker.Container;
      try {
        container = await engine.docker.createContainer({
          name: names.seed,
          Image: this.image,
          Entrypoint: ["/bin/sh", "-c", SEED_SCRIPT],
          Cmd: [],
          User: "root",
          Labels: projectLabels(spec, "seed", engine.labels),
          HostConfig: {
            Runtime: "runc",
            NetworkMode: "none",
            ...hardenedHostConfig(SEED_HARDENING),
            // The engine removes it once it exits, even if this service does not live to.
            AutoRemove: true,
            Mounts: [
              { Type: "volume", Source: template, Target: TEMPLATE_MOUNT, ReadOnly: true },
              { Type: "volume", Source: names.volume, Target: PGDATA },
            ],
          },
        });
      } catch (error) {
        if (!isConflict(error) || Date.now() > until) {
          throw toRuntimeError(error, `creating container ${names.seed}`, engine.endpoint);
        }
        await this.settleSeed(spec, names);
        continue;
      }
      const exitCode = await engine.call(`seeding volume ${names.volume}`, async () => {
        const removed = container.wait({ condition: "removed" }) as Promise<{ StatusCode: number }>;
        try {
          await container.start();
        } catch (error) {
          removed.catch(() => undefined);
          await container.remove({ force: true }).catch(() => undefined);
          throw error;
        }
        return (await removed).StatusCode;
      });
      if (exitCode === 0) return "copied";
      if (exitCode === HOLDS_A_CLUSTER) return "holds-a-cluster";
      if (exitCode === TEMPLATE_NOT_READY) return "template-not-ready";
      throw new RuntimeError("failed", `copying the PostgreSQL template into volume ${names.volume} failed (exit code ${exitCode})`);
    }
  }

  /**
   * Another seed holds the name: one running (another process copying into
   * this volume) is waited for; one that never started long after its
   * creation was left by a service that died in between, and is removed.
   */
  private async settleSeed(spec: DatabaseSpec, names: ProjectNames): Promise<void> {
    const info = await this.engine.inspectContainer(names.seed);
    if (info) {
      const problem = ownershipProblem("container", names.seed, info.Config.Labels, spec, "seed");
      if (problem) throw new RuntimeError("conflict", problem);
      if (neverStarted(info) && Date.now() - Date.parse(info.Created) > ABANDONED_SEED_MS) {
        await this.engine.docker.getContainer(info.Id).remove({ force: true }).catch(() => undefined);
      } else {
        await this.gone(names.seed, ABANDONED_SEED_MS);
      }
    }
    // The engine holds the name a moment longer than the container.
    await sleep(50);
  }

  private build(template: string): Promise<boolean> {
    let build = this.builds.get(template);
    if (!build) {
      build = this.buildOnce(template).then(
        () => true,
        (error: unknown) => {
          this.engine.logger.warn(
            { volume: template, err: loggableError(error) },
            "could not make the PostgreSQL template; the image initialises each database",
          );
          this.failed.add(template);
          return false;
        },
      );
      this.builds.set(template, build);
      // A template removed after a success is made again by the next build.
      void build.finally(() => this.builds.delete(template));
    }
    return build;
  }

  /**
   * The image initialises a fresh directory of the template volume (a build
   * cut short leaves only a directory nobody names), the superuser loses its
   * password, the server shuts down cleanly, and then the marker names it.
   */
  private async buildOnce(template: string): Promise<void> {
    const { engine } = this;
    const started = Date.now();
    const name = `${template}-build`;
    const cluster = `cluster-${randomBytes(6).toString("hex")}`;
    const create = (): Promise<Docker.Container> =>
      engine.docker.createContainer({
        name,
        Image: this.image,
        Env: [
          `POSTGRES_USER=${SUPERUSER}`,
          `POSTGRES_PASSWORD=${randomBytes(16).toString("hex")}`,
          `POSTGRES_DB=${SUPERUSER}`,
          `PGDATA=${PGDATA}/${cluster}`,
        ],
        StopSignal: "SIGINT",
        Labels: sharedLabels("template", engine.labels),
        HostConfig: {
          Runtime: "runc",
          NetworkMode: "none",
          ...hardenedHostConfig(POSTGRES_HARDENING),
          Mounts: [{ Type: "volume", Source: template, Target: PGDATA }],
        },
      });
    let container: Docker.Container;
    try {
      container = await create();
    } catch (error) {
      if (!isConflict(error)) throw error;
      // Another process is building it: its marker will do. One left by a
      // service that died mid-build is removed and the build done afresh.
      if (!(await this.removeIfStale(name))) {
        await this.gone(name, STALE_BUILD_MS);
        return;
      }
      container = await create();
    }
    try {
      await container.start();
      await waitUntilAccepting(engine, container, name, { at: Date.now() + BUILD_TIMEOUT_MS, timeoutMs: BUILD_TIMEOUT_MS }, undefined);
      await runSuperuserScript(engine, container, "removing the template superuser's password", [
        `ALTER ROLE ${SUPERUSER} PASSWORD NULL;`,
      ]);
      await container.stop({ t: 60 });
      const state = (await container.inspect()).State;
      if (state.ExitCode !== 0) throw new RuntimeError("failed", `PostgreSQL did not shut down cleanly (exit code ${state.ExitCode})`);
      const marker = tarArchive([{ name: READY_MARKER, content: `${cluster}\n`, mode: 0o644, uid: 0, gid: 0 }]);
      await container.putArchive(marker, { path: PGDATA });
    } finally {
      await container.remove({ force: true, v: true }).catch(() => undefined);
    }
    engine.logger.info({ volume: template, image: this.image, ms: Date.now() - started }, "PostgreSQL template ready");
  }

  private async removeIfStale(name: string): Promise<boolean> {
    const info = await this.engine.inspectContainer(name);
    if (!info) return true;
    if (info.State.Running && Date.now() - Date.parse(info.Created) < STALE_BUILD_MS) return false;
    await this.engine.docker.getContainer(name).remove({ force: true, v: true }).catch(() => undefined);
    return true;
  }

  /** Until no container is left under `name`, or `timeoutMs` has passed. */
  private async gone(name: string, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      try {
        await this.engine.docker.getContainer(name).wait({ condition: "removed" });
        return;
      } catch (error) {
        if (isNotFound(error)) return;
        await sleep(100);
      }
    }
  }
}
