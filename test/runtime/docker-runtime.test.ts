// The Docker driver against a real Docker engine and the offline images of
// scripts/docker/build-images.sh: the shared Runtime contract (PgBouncer
// published on 127.0.0.1), then what only this driver does. The test process
// reaches containers only through 127.0.0.1 or docker exec; containers talk
// to each other only on networks this run created. Everything carries the
// run's label and is removed by it.
import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DockerRuntime } from "../../src/runtime/docker/index.js";
import { renderContainerPgbouncerIni, supportsPreparedStatements } from "../../src/runtime/docker/pgbouncer-container-config.js";
import { templateVolumeName } from "../../src/runtime/docker/postgres-template.js";
import { parsePsqlCsv } from "../../src/runtime/shared/psql-csv.js";
import { RuntimeError, type DatabaseSpec } from "../../src/runtime/runtime.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine, TEST_POSTGRES_IMAGE , describeWithDocker } from "../support/docker-test-bed.js";
import { describeRuntimeContract } from "./runtime-contract.js";

describe("Docker runtime: pure parts", () => {
  it("reads psql's CSV back into rows, telling NULL from the empty string", () => {
    const marker = "<null:0123>";
    const text = `a,b\n,${marker}\n"x,""y""","multi\nline"\n`;
    expect(parsePsqlCsv(text, marker)).toEqual([
      { a: "", b: null },
      { a: 'x,"y"', b: "multi\nline" },
    ]);
    expect(parsePsqlCsv(`v\n\n${marker}\nz\n`, marker)).toEqual([{ v: "" }, { v: null }, { v: "z" }]);
    expect(parsePsqlCsv("", marker)).toEqual([]);
  });

  it("writes PgBouncer's container config with the product spec's pool settings", () => {
    const ini = renderContainerPgbouncerIni({ database: "my-app", postgresHost: "sota-db-my-app", preparedStatementsSupported: true });
    expect(ini).toContain("my-app = host=sota-db-my-app port=5432 dbname=my-app\n");
    expect(ini).toContain("my-app_session = host=sota-db-my-app port=5432 dbname=my-app pool_mode=session pool_size=5 max_db_connections=5\n");
    expect(ini).toContain("server_reset_query_always = 1\n");
    for (const line of ["pool_mode = transaction", "default_pool_size = 20", "max_client_conn = 100", "auth_type = scram-sha-256"]) {
      expect(ini).toContain(line);
    }
    expect(ini).toContain("max_prepared_statements = 100");
    const old = renderContainerPgbouncerIni({ database: "a", postgresHost: "sota-db-a", preparedStatementsSupported: false });
    expect(old).not.toContain("max_prepared_statements");
    expect(supportsPreparedStatements("1.20.1")).toBe(false);
    expect(supportsPreparedStatements("1.21.0")).toBe(false);
    expect(supportsPreparedStatements("1.22.0")).toBe(true);
    expect(supportsPreparedStatements("1.24.1")).toBe(true);
  });
});

/** Names of the containers on a network. */
function attached(network: Docker.NetworkInspectInfo): string[] {
  return Object.values((network.Containers ?? {}) as Record<string, { Name: string }>).map((container) => container.Name);
}

const engine = await probeDockerEngine();
const required = process.env["SOTA_REQUIRE_DOCKER"] === "1";

describeWithDocker("Docker runtime", engine, () => {
  describeRuntimeContract("docker", async () => {
    await ensureTestImages();
    const bed = new DockerTestBed();
    let runtime = bed.runtime({ publishHost: "127.0.0.1" });
    return {
      runtime,
      reopen: async () => {
        await runtime.close();
        runtime = bed.runtime({ publishHost: "127.0.0.1" });
        return runtime;
      },
      cleanup: async () => {
        await runtime.close();
        await bed.cleanup();
      },
      logs: () => bed.logs.text(),
    };
  });

  describe("Docker runtime", () => {
    const bed = new DockerTestBed();
    const docker = bed.docker;
    let plain: DockerRuntime;
    const passwords: string[] = [];

    const newSpec = (name: string): DatabaseSpec => {
      const spec = { projectId: randomUUID(), slug: `${name}-${bed.runId}`, password: randomBytes(16).toString("hex") };
      passwords.push(spec.password);
      return spec;
    };
    const inspect = (name: string) => docker.getContainer(name).inspect();
    const project = (spec: DatabaseSpec) => bed.find({ "io.sota.project-id": spec.projectId });

    beforeAll(async () => {
      await ensureTestImages();
      plain = bed.runtime();
    });

    afterAll(async () => {
      await plain?.close();
      await bed.cleanup();
    });

    describe("a provisioned database", () => {
      const spec = newSpec("shape");

      beforeAll(async () => {
        await plain.ensure(spec);
        // The WAL receiver is set up once ensure has returned; pitr's calls wait for it.
        await plain.pitr.walGenerations(spec);
      });

      it("is the product spec's two containers and a WAL receiver, labelled, on runc, restarting unless stopped, data in named volumes", async () => {
        for (const [name, role] of [
          [`sota-db-${spec.slug}`, "postgres"],
          [`sota-pgbouncer-${spec.slug}`, "pgbouncer"],
          [`sota-walreceiver-${spec.slug}`, "walreceiver"],
        ] as const) {
          const info = await inspect(name);
          expect(info.Config.Labels).toMatchObject({
            "io.sota.managed": "true",
            "io.sota.project-id": spec.projectId,
            "io.sota.slug": spec.slug,
            "io.sota.role": role,
          });
          expect(info.HostConfig.Runtime).toBe("runc");
          expect(info.HostConfig.RestartPolicy?.Name).toBe("unless-stopped");
          expect(info.State.Running).toBe(true);
        }
        const postgres = await inspect(`sota-db-${spec.slug}`);
        expect(postgres.Mounts).toEqual([
          expect.objectContaining({ Type: "volume", Name: `sota-db-${spec.slug}-data`, Destination: "/var/lib/postgresql/data" }),
        ]);
        const volume = await docker.getVolume(`sota-db-${spec.slug}-data`).inspect();
        expect(volume.Labels).toMatchObject({ "io.sota.project-id": spec.projectId, "io.sota.role": "data" });
        const archive = await docker.getVolume(`sota-wal-${spec.slug}`).inspect();
        expect(archive.Labels).toMatchObject({ "io.sota.project-id": spec.projectId, "io.sota.role": "wal" });
        const receiver = await inspect(`sota-walreceiver-${spec.slug}`);
        expect(receiver.Config.Image).toBe(postgres.Image);
        expect(receiver.Mounts.filter((mount) => mount.Type === "volume").map((mount) => mount.Name)).toEqual([`sota-wal-${spec.slug}`]);
      });

      it("publishes no host port unless configured", async () => {
        const result = await plain.ensure(spec);
        expect(result.endpoint).toEqual({ host: `sota-pgbouncer-${spec.slug}`, port: 5432, network: bed.appNetwork });
        for (const name of [`sota-db-${spec.slug}`, `sota-pgbouncer-${spec.slug}`]) {
          const info = await inspect(name);
          expect(Object.keys(info.HostConfig.PortBindings ?? {})).toEqual([]);
          for (const bindings of Object.values(info.NetworkSettings.Ports ?? {})) expect(bindings ?? []).toEqual([]);
        }
      });

      it("keeps PostgreSQL on a private network with PgBouncer and its WAL receiver only, off the app network", async () => {
        const privateNetwork = await docker.getNetwork(`sota-db-${spec.slug}-net`).inspect();
        expect(privateNetwork.Internal).toBe(true);
        expect(privateNetwork.Labels).toMatchObject({ "io.sota.project-id": spec.projectId, "io.sota.role": "private-network" });
        const onPrivate = attached(privateNetwork).sort();
        expect(onPrivate).toEqual([`sota-db-${spec.slug}`, `sota-pgbouncer-${spec.slug}`, `sota-walreceiver-${spec.slug}`]);
        const receiver = await inspect(`sota-walreceiver-${spec.slug}`);
        expect(Object.keys(receiver.NetworkSettings.Networks)).toEqual([`sota-db-${spec.slug}-net`]);

        const postgres = await inspect(`sota-db-${spec.slug}`);
        expect(Object.keys(postgres.NetworkSettings.Networks)).toEqual([`sota-db-${spec.slug}-net`]);
        const appNetwork = await docker.getNetwork(bed.appNetwork).inspect();
        const onApp = attached(appNetwork);
        expect(onApp).toContain(`sota-pgbouncer-${spec.slug}`);
        expect(onApp).not.toContain(`sota-db-${spec.slug}`);
      });

      it("serves the product spec's DATABASE_URL to an app container on the app network, which cannot reach PostgreSQL", async () => {
        const url = `postgresql://app_${spec.slug}:${spec.password}@sota-pgbouncer-${spec.slug}:5432/${spec.slug}?sslmode=disable`;
        const app = await bed.runClient(
          bed.appNetwork,
          `psql "$DATABASE_URL" -X -A -t -c "SELECT current_user || '@' || current_database()"; ` +
            `if pg_isready -q -t 3 -h sota-db-${spec.slug} -p 5432; then echo POSTGRES-REACHABLE; fi`,
          [`DATABASE_URL=${url}`],
        );
        expect(app.output).toContain(`app_${spec.slug}@${spec.slug}`);
        expect(app.output).not.toContain("POSTGRES-REACHABLE");
      });

      it("runs PgBouncer with the product spec's pool settings and SCRAM, read back from its console", async () => {
        const config = new Map((await plain.poolerCommand(spec, "SHOW CONFIG")).map((row) => [row["key"], row["value"]]));
        expect(config.get("pool_mode")).toBe("transaction");
        expect(config.get("default_pool_size")).toBe("20");
        expect(config.get("max_client_conn")).toBe("100");
        expect(config.get("max_prepared_statements")).toBe("100");
        expect(config.get("auth_type")).toBe("scram-sha-256");
        const databases = await plain.poolerCommand(spec, "SHOW DATABASES");
        expect(databases.find((row) => row["name"] === spec.slug)).toMatchObject({ host: `sota-db-${spec.slug}`, port: "5432" });
      });

      it("puts no secret in labels, commands or the PgBouncer container's environment", async () => {
        const postgres = await inspect(`sota-db-${spec.slug}`);
        const pgbouncer = await inspect(`sota-pgbouncer-${spec.slug}`);
        expect(JSON.stringify([postgres, pgbouncer])).not.toContain(spec.password);
        expect(JSON.stringify([postgres.Config.Labels, postgres.Config.Cmd, postgres.Config.Entrypoint])).not.toMatch(/PASSWORD|SCRAM/i);
        expect(JSON.stringify([pgbouncer.Config.Labels, pgbouncer.Config.Cmd, pgbouncer.Config.Env])).not.toMatch(/PASSWORD|SCRAM/i);
        // The official image's contract needs POSTGRES_PASSWORD to initialise;
        // the superuser's password is removed right after, so it opens nothing.
        const superuser = await plain.adminQuery(spec, "SELECT (rolpassword IS NULL)::text AS none FROM pg_authid WHERE rolname = 'postgres'");
        expect(superuser).toEqual([{ none: "true" }]);
      });

      it("starts from the image's template volume, made once per image, so PostgreSQL skips initdb", async () => {
        const templates = (await docker.listVolumes({ filters: { label: [`io.sota.test-run=${bed.runId}`, "io.sota.role=template"] } }))
          .Volumes ?? [];
        expect(templates).toHaveLength(1);
        const image = await docker.getImage(TEST_POSTGRES_IMAGE).inspect();
        expect(templates[0]?.Labels).toMatchObject({ "io.sota.managed": "true", "io.sota.image": image.Id });
        expect(templates[0]?.Labels?.["io.sota.project-id"]).toBeUndefined();
        const log = await docker.getContainer(`sota-db-${spec.slug}`).logs({ stdout: true, stderr: true, follow: false });
        expect(log.toString("utf8")).not.toContain("init process complete");
        expect((await project(spec)).containers.sort()).toEqual([
          `sota-db-${spec.slug}`,
          `sota-pgbouncer-${spec.slug}`,
          `sota-walreceiver-${spec.slug}`,
        ]);
        expect(bed.logs.text().match(/"msg":"PostgreSQL template ready"/g) ?? []).toHaveLength(1);
      });

      it("starts stopped containers again and reuses them", async () => {
        const before = [(await inspect(`sota-db-${spec.slug}`)).Id, (await inspect(`sota-pgbouncer-${spec.slug}`)).Id];
        await docker.getContainer(`sota-pgbouncer-${spec.slug}`).stop();
        await docker.getContainer(`sota-db-${spec.slug}`).stop();
        expect((await plain.status(spec)).state).toBe("stopped");
        await plain.ensure(spec);
        const after = [await inspect(`sota-db-${spec.slug}`), await inspect(`sota-pgbouncer-${spec.slug}`)];
        expect(after.map((info) => info.Id)).toEqual(before);
        expect(after.every((info) => info.State.Running)).toBe(true);
        expect((await plain.status(spec)).state).toBe("running");
      });
    });

    describe("resuming an interrupted ensure", () => {
      it("completes an ensure that stopped after the volume", async () => {
        const spec = newSpec("after-volume");
        const volumeName = `sota-db-${spec.slug}-data`;
        await docker.createVolume({
          Name: volumeName,
          Labels: {
            ...bed.label,
            "io.sota.managed": "true",
            "io.sota.project-id": spec.projectId,
            "io.sota.slug": spec.slug,
            "io.sota.role": "data",
            "io.sota.test-marker": "made-before-the-crash",
          },
        });
        await plain.ensure(spec);
        await plain.pitr.walGenerations(spec);
        const reused = await docker.getVolume(volumeName).inspect();
        expect(reused.Labels?.["io.sota.test-marker"]).toBe("made-before-the-crash");
        expect(await project(spec)).toEqual({
          containers: expect.arrayContaining([`sota-db-${spec.slug}`, `sota-pgbouncer-${spec.slug}`, `sota-walreceiver-${spec.slug}`]),
          volumes: expect.arrayContaining([volumeName, `sota-wal-${spec.slug}`]),
          networks: [`sota-db-${spec.slug}-net`],
        });
        expect((await project(spec)).containers).toHaveLength(3);
        expect((await project(spec)).volumes).toHaveLength(2);
      });

      for (const step of ["postgres", "pgbouncer"] as const) {
        it(`completes an ensure interrupted right after creating the ${step} container, with no duplicate`, async () => {
          const spec = newSpec(`cut-${step}`);
          const name = step === "postgres" ? `sota-db-${spec.slug}` : `sota-pgbouncer-${spec.slug}`;
          const controller = new AbortController();
          bed.logs.once(
            (line) => line.includes('"msg":"container created"') && line.includes(`"container":"${name}"`),
            () => controller.abort(new Error("service killed")),
          );
          await expect(plain.ensure(spec, controller.signal)).rejects.toThrow("service killed");
          const partial = await project(spec);
          expect(partial.containers).toContain(name);
          if (step === "postgres") expect(partial.containers).toEqual([name]);
          else expect((await inspect(name)).State.Running).toBe(false);

          const result = await plain.ensure(spec);
          expect(result.endpoint.host).toBe(`sota-pgbouncer-${spec.slug}`);
          await plain.pitr.walGenerations(spec);
          const complete = await project(spec);
          expect(complete.containers.sort()).toEqual([`sota-db-${spec.slug}`, `sota-pgbouncer-${spec.slug}`, `sota-walreceiver-${spec.slug}`]);
          expect(complete.volumes.sort()).toEqual([`sota-db-${spec.slug}-data`, `sota-wal-${spec.slug}`]);
          expect(complete.networks).toEqual([`sota-db-${spec.slug}-net`]);
        });
      }
    });

    describe("objects it does not own", () => {
      it("refuses a container under a managed name without its labels, and leaves it alone", async () => {
        const spec = newSpec("foreign");
        const foreign = await docker.createContainer({
          name: `sota-db-${spec.slug}`,
          Image: TEST_POSTGRES_IMAGE,
          Entrypoint: ["sleep", "infinity"],
          Labels: bed.label,
        });
        const error = await plain.ensure(spec).catch((reason: unknown) => reason);
        expect(error).toBeInstanceOf(RuntimeError);
        expect((error as RuntimeError).reason).toBe("conflict");
        expect((error as RuntimeError).message).toContain(`sota-db-${spec.slug}`);
        await expect(plain.remove(spec, { keepData: false })).rejects.toMatchObject({ reason: "conflict" });
        expect((await foreign.inspect()).Id).toBe(foreign.id);
        expect(await project(spec)).toEqual({ containers: [], volumes: [], networks: [] });
      });

      it("refuses a managed container of another project under the same name", async () => {
        const spec = newSpec("taken");
        const other = { ...spec, projectId: randomUUID(), password: randomBytes(16).toString("hex") };
        passwords.push(other.password);
        await plain.ensure(other);
        await expect(plain.ensure(spec)).rejects.toMatchObject({ reason: "conflict" });
        await expect(plain.remove(spec, { keepData: false })).rejects.toMatchObject({ reason: "conflict" });
        expect((await inspect(`sota-db-${spec.slug}`)).Config.Labels?.["io.sota.project-id"]).toBe(other.projectId);
        await plain.remove(other, { keepData: false });
      });
    });

    it("two service processes ensuring one new project at once make one database", async () => {
      const spec = newSpec("race");
      const [one, two] = [bed.runtime(), bed.runtime()];
      // allSettled: a failure must not leave the other ensure running into the cleanup.
      const settled = await Promise.allSettled([one.ensure(spec), two.ensure(spec)]);
      const [a, b] = settled.map((outcome) => {
        if (outcome.status === "rejected") throw outcome.reason;
        return outcome.value;
      });
      expect(a?.endpoint).toEqual(b?.endpoint);
      // Both set up the WAL receiver after returning: still one receiver, one archive, streaming.
      const [generations] = await Promise.all([one.pitr.walGenerations(spec), two.pitr.walGenerations(spec)]);
      expect(generations).toHaveLength(1);
      await one.pitr.flushWal(spec);
      const objects = await project(spec);
      expect(objects.containers).toHaveLength(3);
      expect(objects.volumes).toHaveLength(2);
      expect(objects.networks).toEqual([`sota-db-${spec.slug}-net`]);
      const app = await bed.runClient(
        bed.appNetwork,
        `psql "$DATABASE_URL" -X -A -t -c "SELECT 'through-' || current_user"`,
        [`DATABASE_URL=postgresql://app_${spec.slug}:${spec.password}@sota-pgbouncer-${spec.slug}:5432/${spec.slug}?sslmode=disable`],
      );
      expect(app.output).toContain(`through-app_${spec.slug}`);
    });

    it("gives each project its own app network in per-project mode", async () => {
      const spec = newSpec("own-net");
      const runtime = bed.runtime({ appNetwork: "per-project" });
      const result = await runtime.ensure(spec);
      expect(result.endpoint.network).toBe(`sota-app-${spec.slug}`);
      const network = await docker.getNetwork(`sota-app-${spec.slug}`).inspect();
      expect(network.Labels).toMatchObject({ "io.sota.project-id": spec.projectId, "io.sota.role": "app-network" });
      expect(attached(network)).toEqual([`sota-pgbouncer-${spec.slug}`]);
      await runtime.remove(spec, { keepData: false });
      expect(await project(spec)).toEqual({ containers: [], volumes: [], networks: [] });
    });

    it("streams a large dump and restores it; a broken-off restore applies nothing", async () => {
      const spec = newSpec("dump");
      const runtime = bed.runtime({ publishHost: "127.0.0.1" });
      const result = await runtime.ensure(spec);
      expect(result.endpoint.loopback?.host).toBe("127.0.0.1");
      const published = (await inspect(`sota-pgbouncer-${spec.slug}`)).HostConfig.PortBindings?.["5432/tcp"];
      expect(published).toEqual([{ HostIp: "127.0.0.1", HostPort: "" }]);

      await runtime.appQuery(spec, "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 150000) AS g");
      let lines = 0;
      let tail = "";
      let bytes = 0;
      for await (const chunk of runtime.dump(spec)) {
        const text = tail + String(chunk);
        const parts = text.split("\n");
        tail = parts.pop() ?? "";
        lines += parts.length;
        bytes += (chunk as Buffer).length;
        // A slow consumer: the engine stream must pause rather than pile up.
        if (lines % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      expect(bytes).toBeGreaterThan(5_000_000);
      expect(lines).toBeGreaterThan(150_000);

      // Loads run as the app role, into databases it owns.
      await runtime.adminQuery(spec, `CREATE DATABASE "copy" OWNER "app_${spec.slug}"`);
      await runtime.restore(spec, runtime.dump(spec), "copy");
      expect(await runtime.appQuery(spec, "SELECT count(*)::text AS n, max(id)::text AS top FROM big", "copy")).toEqual([
        { n: "150000", top: "150000" },
      ]);

      await runtime.adminQuery(spec, `CREATE DATABASE "broken" OWNER "app_${spec.slug}"`);
      const broken = new Readable({ read() {} });
      broken.push("CREATE TABLE first_part (x int);\nINSERT INTO first_part VALUES (1);\n");
      setTimeout(() => broken.destroy(new Error("upload cut")), 500);
      const error = await runtime.restore(spec, broken, "broken").catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(RuntimeError);
      expect((error as RuntimeError).message).toMatch(/broke off/);
      expect(await runtime.appQuery(spec, "SELECT count(*)::text AS n FROM pg_class WHERE relname = 'first_part'", "broken")).toEqual([
        { n: "0" },
      ]);
      await runtime.remove(spec, { keepData: false });
    });

    it("removes everything of a project, keeping the volume only when asked", async () => {
      const spec = newSpec("gone");
      await plain.ensure(spec);
      await plain.remove(spec, { keepData: true });
      const kept = await project(spec);
      expect(kept).toEqual({ containers: [], volumes: expect.arrayContaining([`sota-db-${spec.slug}-data`, `sota-wal-${spec.slug}`]), networks: [] });
      expect(kept.volumes).toHaveLength(2);
      expect((await plain.status(spec)).state).toBe("stopped");
      await plain.remove(spec, { keepData: false });
      expect(await project(spec)).toEqual({ containers: [], volumes: [], networks: [] });
      expect((await plain.status(spec)).state).toBe("missing");
      await plain.remove(spec, { keepData: false });
    });

    it("never copies the template over the data a kept volume holds", async () => {
      const spec = newSpec("kept");
      await plain.ensure(spec);
      await plain.appQuery(spec, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");
      await plain.remove(spec, { keepData: true });
      await plain.ensure(spec);
      expect(await plain.appQuery(spec, "SELECT v::text FROM kept")).toEqual([{ v: "42" }]);
      await plain.remove(spec, { keepData: false });
    });

    it("initialises with the image itself when the template's name is taken by a volume it did not make", async () => {
      const labels = { ...bed.label, "io.sota.test-case": "no-template" };
      const image = await docker.getImage(TEST_POSTGRES_IMAGE).inspect();
      const taken = templateVolumeName(image.Id, labels);
      await docker.createVolume({ Name: taken, Labels: bed.label });
      const runtime = bed.runtime({ labels });
      const spec = newSpec("no-template");
      const result = await runtime.ensure(spec);
      expect(result.endpoint.host).toBe(`sota-pgbouncer-${spec.slug}`);
      const log = await docker.getContainer(`sota-db-${spec.slug}`).logs({ stdout: true, stderr: true, follow: false });
      expect(log.toString("utf8")).toContain("init process complete");
      expect(bed.logs.text()).toContain("not created by sota-db; not using it");
      expect((await docker.getVolume(taken).inspect()).Labels).toEqual(bed.label);
      const superuser = await runtime.adminQuery(spec, "SELECT (rolpassword IS NULL)::text AS none FROM pg_authid WHERE rolname = 'postgres'");
      expect(superuser).toEqual([{ none: "true" }]);
      await runtime.remove(spec, { keepData: false });
    });

    it("reports an unreachable engine as unavailable, naming it", async () => {
      const runtime = bed.runtime({ docker: new Docker({ socketPath: "/nonexistent/sota-test-docker.sock" }) });
      const ping = await runtime.ping().catch((reason: unknown) => reason);
      expect(ping).toBeInstanceOf(RuntimeError);
      expect((ping as RuntimeError).reason).toBe("unavailable");
      expect((ping as RuntimeError).message).toContain("/nonexistent/sota-test-docker.sock");
      await expect(runtime.ensure(newSpec("no-engine"))).rejects.toMatchObject({ reason: "unavailable" });
      await expect(runtime.status(newSpec("no-engine"))).rejects.toMatchObject({ reason: "unavailable" });
    });

    it("says clearly that a missing image could not be pulled, creating nothing", async () => {
      const image = `sota-db-test/absent-${bed.runId}:never`;
      const runtime = bed.runtime({ postgresImage: image });
      const spec = newSpec("no-image");
      const error = await runtime.ensure(spec).catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(RuntimeError);
      expect((error as RuntimeError).reason).toBe("unavailable");
      expect((error as RuntimeError).message).toContain(`image ${image} is not present`);
      expect(bed.logs.text()).toContain(`"image":"${image}","msg":"pulling image"`);
      expect(await project(spec)).toEqual({ containers: [], volumes: [], networks: [] });
    });

    it("never logs a password or a SCRAM verifier", () => {
      const logs = bed.logs.text();
      expect(logs.length).toBeGreaterThan(0);
      for (const password of passwords) expect(logs).not.toContain(password);
      expect(logs).not.toContain("SCRAM-SHA-256$");
    });
  });
});
