// The Docker driver's point-in-time recovery against a real Docker engine:
// the shared contract (test/support/pitr-contract.ts), with the data volume
// destroyed the way a failed disk or an operator would (the container
// force-removed, then its volume).
import { describePitrContract } from "../support/pitr-contract.js";
import { DockerTestBed, describeWithDocker, ensureTestImages, probeDockerEngine } from "../support/docker-test-bed.js";

const engine = await probeDockerEngine();

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
});
