// Issue 11 item 5 in the Docker runtime: each PostgreSQL container runs with
// the memory, CPU, pids and /dev/shm limits the driver is given (a project's
// override over the defaults), changed in place on a running container where
// the engine can; a database that allocates past its memory limit has a
// backend killed inside its own container, which the driver reports, while
// its neighbour keeps answering.
import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DockerRuntime } from "../../src/runtime/docker/index.js";
import type { DatabaseSpec } from "../../src/runtime/runtime.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine , describeWithDocker } from "../support/docker-test-bed.js";
import { superuserSql } from "../support/tenant-superuser.js";

const engine = await probeDockerEngine();
const MIB = 1024 * 1024;
const MEMORY_MB = 256;

describeWithDocker("Docker resource limits", engine, () => {
  describe("Docker runtime: per-database resource limits", () => {
    const bed = new DockerTestBed();
    const docker = bed.docker;
    let runtime: DockerRuntime;
    const spec = (name: string): DatabaseSpec => ({
      projectId: randomUUID(),
      slug: `${name}-${bed.runId}`,
      password: randomBytes(16).toString("hex"),
    });
    const hog = spec("limits-hog");
    const calm = spec("limits-calm");
    const inspect = (target: DatabaseSpec) => docker.getContainer(`sota-db-${target.slug}`).inspect();

    beforeAll(async () => {
      await ensureTestImages();
      runtime = bed.runtime({ postgresMemoryMb: MEMORY_MB, limits: { cpus: 0.5, pids: 300, shmMb: 128 } });
      await Promise.all([runtime.ensure(hog), runtime.ensure(calm)]);
    });

    afterAll(async () => {
      await runtime?.close();
      await bed.cleanup();
    });

    it("creates each PostgreSQL container with the memory, CPU, pids and shm limits", async () => {
      const host = (await inspect(hog)).HostConfig;
      expect(host).toMatchObject({ Memory: MEMORY_MB * MIB, MemorySwap: MEMORY_MB * MIB, NanoCpus: 500_000_000, PidsLimit: 300, ShmSize: 128 * MIB });
      expect(await runtime.limitsStatus(hog)).toEqual({
        mechanism: "docker",
        limits: { memoryMb: MEMORY_MB, cpus: 0.5, pids: 300, shmMb: 128 },
        oomKills: 0,
      });
    });

    it("kills a backend past the memory limit inside its container, reports it, and the neighbour keeps answering", async () => {
      for (let round = 0; round < 2; round += 1) {
        await expect(superuserSql(docker, `sota-db-${hog.slug}`, `SELECT length(repeat('x', ${MEMORY_MB + 150} * 1024 * 1024))`)).rejects.toThrow(
          /closed the connection|terminat|out of memory|connection to server was lost/i,
        );
        expect(await superuserSql(docker, `sota-db-${calm.slug}`, "SELECT 1")).toBe("1");
        let answer = "";
        for (let attempt = 0; attempt < 60 && answer !== "1"; attempt++) {
          answer = await superuserSql(docker, `sota-db-${hog.slug}`, "SELECT 1").catch(async () => {
            await new Promise((resolve) => setTimeout(resolve, 500));
            return "";
          });
        }
        expect(answer).toBe("1");
      }
      expect((await runtime.limitsStatus(hog)).oomKills).toBeGreaterThanOrEqual(1);
      expect((await runtime.limitsStatus(calm)).oomKills).toBe(0);
    });

    it("changes memory, CPU and pids in place for a project's override, and says shm cannot be", async () => {
      const before = await inspect(calm);
      await runtime.ensure({ ...calm, limits: { memoryMb: 384, cpus: 1, pids: 400, shmMb: 64 } });
      const after = await inspect(calm);
      expect(after.Id).toBe(before.Id);
      expect(after.HostConfig).toMatchObject({ Memory: 384 * MIB, MemorySwap: 384 * MIB, NanoCpus: 1_000_000_000, PidsLimit: 400, ShmSize: 128 * MIB });
      expect(bed.logs.text()).toContain("/dev/shm size cannot change in place");
      expect(await superuserSql(docker, `sota-db-${calm.slug}`, "SELECT 1")).toBe("1");
    });
  });
});
