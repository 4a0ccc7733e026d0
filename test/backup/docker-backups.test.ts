// The backup contract against the Docker driver: PostgreSQL and PgBouncer
// containers, the pooler published on 127.0.0.1, psql only through docker
// exec. Skips without an engine unless SOTA_REQUIRE_DOCKER=1.
import { describe, it } from "vitest";
import { describeBackupContract } from "../support/backup-contract.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine , describeWithDocker } from "../support/docker-test-bed.js";

const engine = await probeDockerEngine();

describeWithDocker("Backup contract: docker", engine, () => {
  describeBackupContract("docker", async () => {
    await ensureTestImages();
    const bed = new DockerTestBed();
    const runtime = bed.runtime({ publishHost: "127.0.0.1" });
    return {
      runtime,
      psqlCommand: (target, database) => [
        ...["docker", "exec", "-i", "--user", "postgres", `sota-db-${target.slug}`],
        ...["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", database],
      ],
      cleanup: async () => {
        await runtime.close();
        await bed.cleanup();
      },
      logs: () => bed.logs.text(),
    };
  });
});
