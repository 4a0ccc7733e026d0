// The Docker driver's point-in-time recovery against a real Docker engine:
// the shared contract (test/support/pitr-contract.ts), with the data volume
// destroyed the way a failed disk or an operator would (the container
// force-removed, then its volume); then what only this driver does: the
// receiver beside the user's image, recovery in the same containers, and a
// recovery cut short by the death of the service, undone by the next ensure.
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DockerRuntime } from "../../src/runtime/docker/index.js";
import type { BaseBackupInfo, DatabaseSpec } from "../../src/runtime/runtime.js";
import { describePitrContract } from "../support/pitr-contract.js";
import {
  DockerTestBed,
  describeWithDocker,
  ensureTestImages,
  probeDockerEngine,
  TEST_PGBOUNCER_IMAGE,
  TEST_POSTGRES_IMAGE,
} from "../support/docker-test-bed.js";
import { execCollect } from "../../src/runtime/docker/docker-exec.js";

const engine = await probeDockerEngine();
const CHILD = fileURLToPath(new URL("../support/docker-recover-child.ts", import.meta.url));

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describeWithDocker("Docker runtime: point-in-time recovery", engine, () => {
  describePitrContract("docker", async () => {
    await ensureTestImages();
    const bed = new DockerTestBed();
    const runtime = bed.runtime({ publishHost: "127.0.0.1" });
    return {
      runtime,
      destroyData: async (target) => {
        await bed.docker.getContainer(`sota-db-${target.slug}`).remove({ force: true, v: true });
        await bed.docker.getVolume(`sota-db-${target.slug}-data`).remove();
      },
      cleanup: async () => {
        await runtime.close();
        await bed.cleanup();
      },
    };
  });

  describe("Docker runtime: recovery in the project's own containers", () => {
    const bed = new DockerTestBed();
    const docker = bed.docker;
    let runtime: DockerRuntime;
    const spec: DatabaseSpec = { projectId: randomUUID(), slug: `own-${bed.runId}`, password: randomBytes(16).toString("hex") };
    let base: Buffer;
    let info: BaseBackupInfo;
    let workDir: string;
    const ids = async () =>
      Promise.all([`sota-db-${spec.slug}`, `sota-pgbouncer-${spec.slug}`].map(async (name) => (await docker.getContainer(name).inspect()).Id));
    const rows = async () => (await runtime.appQuery(spec, "SELECT string_agg(n::text, ',' ORDER BY n) AS n FROM seen"))[0]?.["n"];
    const inVolume = async () => {
      const outcome = await execCollect(docker, docker.getContainer(`sota-db-${spec.slug}`), {
        cmd: ["sh", "-c", 'ls -A "$PGDATA" | grep "^\\.sota" || true'],
        user: "postgres",
      });
      return outcome.stdout.trim();
    };

    beforeAll(async () => {
      await ensureTestImages();
      workDir = await mkdtemp(join(tmpdir(), "sota-docker-pitr-"));
      runtime = bed.runtime({ publishHost: "127.0.0.1" });
      await runtime.ensure(spec);
      await runtime.appQuery(spec, "CREATE TABLE seen (n int); INSERT INTO seen VALUES (1)");
      const backup = runtime.pitr.baseBackup(spec);
      base = await collect(backup.stream);
      info = await backup.info;
      await runtime.appQuery(spec, "INSERT INTO seen VALUES (2)");
      await runtime.pitr.flushWal(spec);
    });

    afterAll(async () => {
      await runtime?.close();
      await bed.cleanup();
      if (workDir) await rm(workDir, { recursive: true, force: true });
    });

    it("recovers in the same PostgreSQL and PgBouncer containers, leaving no helper, marker or previous cluster behind", async () => {
      const before = await ids();
      await runtime.appQuery(spec, "INSERT INTO seen VALUES (3)");
      const recovered = await runtime.pitr.recover(spec, Readable.from([base]), { source: spec, generation: info.generation });
      expect(await ids()).toEqual(before);
      expect(await rows()).toBe("1,2,3");
      const objects = await bed.find({ "io.sota.project-id": spec.projectId });
      expect(objects.containers.sort()).toEqual([`sota-db-${spec.slug}`, `sota-pgbouncer-${spec.slug}`, `sota-walreceiver-${spec.slug}`]);
      expect(objects.volumes.sort()).toEqual([`sota-db-${spec.slug}-data`, `sota-wal-${spec.slug}`]);
      expect(await inVolume()).toBe("");
      // The recovery settings are gone from postgresql.auto.conf once promoted.
      const settings = await runtime.adminQuery(spec, "SELECT current_setting('restore_command') AS restore, current_setting('recovery_target_time') AS target");
      expect(settings).toEqual([{ restore: "", target: "" }]);
      const receiver = await docker.getContainer(`sota-walreceiver-${spec.slug}`).inspect();
      expect(receiver.Config.Labels?.["io.sota.wal-generation"]).toBe(recovered.generation);
    });

    it("a recovery cut short by the death of the service (after the swap, while PostgreSQL replays) is undone by the next ensure", async () => {
      await runtime.appQuery(spec, "INSERT INTO seen VALUES (4)");
      await runtime.pitr.flushWal(spec);
      const rowsBefore = await rows();
      expect(rowsBefore).toMatch(/,4$/);
      const generationsBefore = await runtime.pitr.walGenerations(spec);
      const current = generationsBefore.at(-1)!.id;
      const basePath = join(workDir, "base.tar");
      await writeFile(basePath, base);
      const request = {
        spec,
        basePath,
        generation: info.generation,
        postgresImage: TEST_POSTGRES_IMAGE,
        pgbouncerImage: TEST_PGBOUNCER_IMAGE,
        appNetwork: bed.appNetwork,
        labels: bed.label,
      };
      const child = spawn(process.execPath, ["--import", "tsx", CHILD, JSON.stringify(request)], { stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      const killed = new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (chunk: Buffer) => {
          output += chunk.toString("utf8");
          // PostgreSQL started on the swapped volume: the service dies now.
          if (/"container":"sota-db-[^"]+","msg":"container started"/.test(output) && child.exitCode === null) child.kill("SIGKILL");
        });
        child.once("exit", (code, signal) => (signal === "SIGKILL" ? resolve(output) : reject(new Error(`child ended on its own (${code}): ${output}`))));
      });
      await killed;
      expect((await docker.getContainer(`sota-db-${spec.slug}-recovery`).inspect()).Config.Labels?.["io.sota.role"]).toBe("recovery");

      await runtime.ensure(spec);
      expect(await rows()).toBe(rowsBefore);
      expect(await inVolume()).toBe("");
      await expect(docker.getContainer(`sota-db-${spec.slug}-recovery`).inspect()).rejects.toMatchObject({ statusCode: 404 });
      // Archiving goes on into the generation it was in.
      await runtime.appQuery(spec, "INSERT INTO seen VALUES (5)");
      await runtime.pitr.flushWal(spec);
      const generations = await runtime.pitr.walGenerations(spec);
      expect(generations.map((generation) => generation.id)).toEqual(generationsBefore.map((generation) => generation.id));
      expect(generations.at(-1)).toMatchObject({ id: current, streaming: true });
      expect(bed.logs.text()).toContain("recovery undone: the database is as it was");
    });
  });
});
