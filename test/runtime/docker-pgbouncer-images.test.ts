// PgBouncer images that run PgBouncer as some other user than `pgbouncer`, as
// the community images do (edoburu/pgbouncer: postgres; bitnami/pgbouncer: a
// numeric uid). No registry answers here, so each variant is built offline
// from sota-db's own PgBouncer image with a two-line Dockerfile; the driver
// must provision through each and a real query must pass its pooler.
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeError, type DatabaseSpec } from "../../src/runtime/runtime.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine, TEST_PGBOUNCER_IMAGE , describeWithDocker } from "../support/docker-test-bed.js";
import { withApp } from "./runtime-contract.js";

/** `docker build` of a Dockerfile given on stdin, with no context (nothing is downloaded). */
function buildImage(tag: string, dockerfile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("docker", ["build", "-q", "-t", tag, "-"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`docker build ${tag} failed: ${stderr.trim()}`))));
    child.stdin.end(dockerfile);
  });
}

const engine = await probeDockerEngine();

describeWithDocker("PgBouncer images", engine, () => {
  describe("PgBouncer images that run PgBouncer as another user", () => {
    const bed = new DockerTestBed();
    const tag = (variant: string) => `sota-db-test/pgbouncer-${variant}:${bed.runId}`;
    const direct = `ENTRYPOINT ["pgbouncer"]\nCMD ["/etc/pgbouncer/pgbouncer.ini"]\n`;
    const variants = {
      // Like edoburu/pgbouncer: USER postgres.
      "as-postgres": `FROM ${TEST_PGBOUNCER_IMAGE}\nUSER postgres\n${direct}`,
      // Like bitnami/pgbouncer: a numeric uid with no passwd entry, no `pgbouncer` user.
      "numeric-uid": `FROM ${TEST_PGBOUNCER_IMAGE}\nRUN userdel pgbouncer\nUSER 70:70\n${direct}`,
      // USER root (none named) and no `pgbouncer` user: only SOTA_PGBOUNCER_USER can say.
      "root-only": `FROM ${TEST_PGBOUNCER_IMAGE}\nRUN userdel pgbouncer\n${direct}`,
    };
    const newSpec = (name: string): DatabaseSpec => ({
      projectId: randomUUID(),
      slug: `${name}-${bed.runId}`,
      password: randomBytes(16).toString("hex"),
    });

    beforeAll(async () => {
      await ensureTestImages();
      for (const [variant, dockerfile] of Object.entries(variants)) await buildImage(tag(variant), dockerfile);
    }, 300_000);

    afterAll(async () => {
      await bed.cleanup();
      for (const variant of Object.keys(variants)) await bed.docker.getImage(tag(variant)).remove({ force: true }).catch(() => undefined);
    });

    const cases: [string, string, string | undefined, string][] = [
      ["the image's USER postgres", "as-postgres", undefined, "postgres"],
      ["the image's numeric USER 70:70", "numeric-uid", undefined, "70:70"],
      ["SOTA_PGBOUNCER_USER=postgres in an image that names no user", "root-only", "postgres", "postgres"],
    ];
    for (const [title, variant, pgbouncerUser, expectedUser] of cases) {
      it(`provisions through PgBouncer run as ${title}`, async () => {
        const runtime = bed.runtime({
          pgbouncerImage: tag(variant),
          publishHost: "127.0.0.1",
          ...(pgbouncerUser ? { pgbouncerUser } : {}),
        });
        try {
          const spec = newSpec(variant);
          const result = await runtime.ensure(spec);
          const answer = await withApp(result, spec, async (client) => (await client.query<{ n: number }>("SELECT 41 + 1 AS n")).rows[0]?.n);
          expect(answer).toBe(42);
          const info = await bed.docker.getContainer(result.endpoint.host).inspect();
          expect(info.Config.User).toBe(expectedUser);
          // The console answers as that user too (RELOAD and SHOW go through it).
          const rows = await runtime.poolerCommand(spec, "SHOW CONFIG");
          expect(rows.some((row) => row["key"] === "pool_mode")).toBe(true);
        } finally {
          await runtime.close();
        }
      }, 180_000);
    }

    it("refuses an image that runs as root and has no pgbouncer user, naming SOTA_PGBOUNCER_USER", async () => {
      const runtime = bed.runtime({ pgbouncerImage: tag("root-only") });
      try {
        const error = await runtime.ensure(newSpec("root")).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(RuntimeError);
        expect((error as Error).message).toContain("SOTA_PGBOUNCER_USER");
      } finally {
        await runtime.close();
      }
    }, 180_000);
  });
});
