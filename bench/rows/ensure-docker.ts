// Row 1, Docker variant: the Docker driver called directly, measured like the
// process driver (a new database until the app's first query through PgBouncer,
// here published on 127.0.0.1), on the local images. Each new data volume is
// copied from the image's template volume, which the unmeasured first ensure
// makes, as the first database on an image does in production. Rows say "skipped" where
// no engine answers or the images are missing; everything the row creates
// carries a run label and is removed by it afterwards.
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import { createLogger } from "../../src/log.js";
import { createDockerRuntime, type DockerRuntime } from "../../src/runtime/docker/index.js";
import { appUrl, firstAppQuery, newSpec } from "../direct-runtime.js";
import type { Plan } from "../plan.js";
import { repeat } from "../repeat.js";
import { settleDisk } from "../settle-disk.js";
import { summarize, timed } from "../stats.js";
import { ms, skippedRow, times, verdict, type Row } from "../table.js";

/** The tags scripts/docker/build-images.sh builds. */
const POSTGRES_IMAGE = process.env["SOTA_POSTGRES_IMAGE"] || "sota-db/postgres:17-trixie";
const PGBOUNCER_IMAGE = process.env["SOTA_PGBOUNCER_IMAGE"] || "sota-db/pgbouncer:1.24-trixie";
const RUN_LABEL = "io.sota.bench-run";
const PING_TIMEOUT_MS = 5_000;
const BUDGET_MS = 120_000;
const NAME =
  "Ensure new DB: Docker driver called directly (ensure + app's first query via published PgBouncer; data volume copied from the image's template volume)";

export async function dockerEnsureRows(plan: Plan, floorMedianMs: number): Promise<Row[]> {
  const docker = new Docker();
  const unavailable = await whyUnavailable(docker);
  if (unavailable) return [skippedRow("1g", NAME, unavailable)];
  const runId = randomBytes(4).toString("hex");
  const runtime = createDockerRuntime({
    docker,
    postgresImage: POSTGRES_IMAGE,
    pgbouncerImage: PGBOUNCER_IMAGE,
    appNetwork: `sota-bench-${runId}`,
    publishHost: "127.0.0.1",
    readyTimeoutMs: 120_000,
    labels: { [RUN_LABEL]: runId },
    logger: createLogger({ level: "silent" }),
  });
  try {
    // Unmeasured: the first ensure also creates the shared app network and the
    // template volume (both carry the run label, so they go with the run).
    await newDockerDatabase(runtime);
    const samples: number[] = [];
    await repeat(plan.dockerRuns, BUDGET_MS, async () => {
      await settleDisk();
      samples.push(await newDockerDatabase(runtime));
    });
    const stats = summarize(samples);
    return [
      {
        id: "1g",
        name: `${NAME}, n=${stats.n}`,
        median: ms(stats.median),
        p95: ms(stats.p95),
        ratio: `${times(stats.median / floorMedianMs)} floor`,
        goal: "p50 ≤ 2.5 s",
        met: verdict(stats.median <= 2500),
      },
    ];
  } finally {
    await runtime.close();
    await removeLabelled(docker, runId);
  }
}

/** Ms to a first query through the new database's pooler; the database is removed afterwards, outside the timing. */
async function newDockerDatabase(runtime: DockerRuntime): Promise<number> {
  const spec = newSpec("bench");
  const { ms: elapsed } = await timed(async () => firstAppQuery(appUrl(spec, await runtime.ensure(spec))));
  await runtime.remove(spec, { keepData: false });
  return elapsed;
}

async function whyUnavailable(docker: Docker): Promise<string | undefined> {
  try {
    await Promise.race([
      docker.ping(),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS / 1000} s`)), PING_TIMEOUT_MS).unref()),
    ]);
  } catch (error) {
    return `no Docker engine answers at ${process.env["DOCKER_HOST"] || "unix:///var/run/docker.sock"} (${(error as Error).message})`;
  }
  for (const image of [POSTGRES_IMAGE, PGBOUNCER_IMAGE]) {
    const present = await docker
      .getImage(image)
      .inspect()
      .then(() => true)
      .catch(() => false);
    if (!present) return `image ${image} is missing (scripts/docker/build-images.sh builds it)`;
  }
  return undefined;
}

/** Containers, then networks, then volumes carrying this run's label. */
async function removeLabelled(docker: Docker, runId: string): Promise<void> {
  const filters = { label: [`${RUN_LABEL}=${runId}`] };
  for (const container of await docker.listContainers({ all: true, filters })) {
    await docker.getContainer(container.Id).remove({ force: true, v: true }).catch(() => undefined);
  }
  for (const network of await docker.listNetworks({ filters })) await docker.getNetwork(network.Id).remove().catch(() => undefined);
  for (const volume of (await docker.listVolumes({ filters })).Volumes ?? []) await docker.getVolume(volume.Name).remove().catch(() => undefined);
}
