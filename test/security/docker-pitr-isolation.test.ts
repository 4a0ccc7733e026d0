// Point-in-time recovery in the Docker runtime, against a hostile tenant: one
// that has become superuser of its own cluster (the next PostgreSQL CVE) and
// runs shell commands in its PostgreSQL container as the postgres OS user.
// Each project's WAL archive holds its data (WAL carries every row), so it
// must stay out of every other tenant's reach; and what the service does with
// an archive or a base backup (list, read, prune, copy, extract) must never
// follow a symbolic link planted in it. Each refusal is paired with what the
// same probe reaches when nothing is in the way, so a probe that cannot work
// proves nothing.
import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execCollect } from "../../src/runtime/docker/docker-exec.js";
import type { DockerRuntime } from "../../src/runtime/docker/index.js";
import { RuntimeError, type DatabaseSpec, type WalGeneration } from "../../src/runtime/runtime.js";
import { DockerTestBed, describeWithDocker, ensureTestImages, probeDockerEngine } from "../support/docker-test-bed.js";
import { shellAsTenantSuperuser, superuserSql } from "../support/tenant-superuser.js";

const engine = await probeDockerEngine();
const ARCHIVE = "/var/lib/sota-wal";

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A ustar entry: a regular file ("0"), a directory ("5") or a symbolic link ("2"). */
function tarEntry(name: string, type: "0" | "2" | "5", body = "", link = ""): Buffer {
  const header = Buffer.alloc(512, 0);
  const content = Buffer.from(body);
  header.write(name, 0, 100);
  header.write(`${(type === "5" ? 0o755 : 0o644).toString(8).padStart(7, "0")}\0`, 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(`${content.length.toString(8).padStart(11, "0")}\0`, 124);
  header.write(`${Math.floor(Date.now() / 1000).toString(8).padStart(11, "0")}\0`, 136);
  header.write("        ", 148);
  header.write(type, 156);
  header.write(link, 157, 100);
  header.write("ustar\0", 257);
  header.write("00", 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512, 0);
  return Buffer.concat([header, content, padding]);
}

describeWithDocker("Docker point-in-time recovery: tenant isolation", engine, () => {
  describe("Docker runtime: a tenant superuser and the WAL archives", () => {
    const bed = new DockerTestBed();
    const docker = bed.docker;
    let runtime: DockerRuntime;
    const spec = (name: string): DatabaseSpec => ({ projectId: randomUUID(), slug: `${name}-${bed.runId}`, password: randomBytes(16).toString("hex") });
    const a = spec("arch-a");
    const b = spec("arch-b");
    const aPostgres = `sota-db-${a.slug}`;
    const shell = (script: string) => shellAsTenantSuperuser(docker, aPostgres, script);
    // Split so that no command line holds it whole.
    const secret = ["b-wal-secret", randomBytes(8).toString("hex")] as const;
    let bGeneration: WalGeneration;

    /** As the archive's owner in A's receiver: what someone who could write the volume might plant. */
    const inReceiver = async (script: string) => {
      const outcome = await execCollect(docker, docker.getContainer(`sota-walreceiver-${a.slug}`), { cmd: ["sh", "-c", script], user: "postgres" });
      expect(outcome.exitCode, outcome.stderr).toBe(0);
      return outcome.stdout.trim();
    };

    beforeAll(async () => {
      await ensureTestImages();
      runtime = bed.runtime({ publishHost: "127.0.0.1" });
      await Promise.all([runtime.ensure(a), runtime.ensure(b)]);
      await superuserSql(docker, `sota-db-${b.slug}`, `CREATE TABLE public.secret AS SELECT '${secret.join("-")}' AS v;`, b.slug);
      await runtime.pitr.flushWal(b);
      await runtime.pitr.flushWal(a);
      [bGeneration] = (await runtime.pitr.walGenerations(b)) as [WalGeneration];
    });

    afterAll(async () => {
      await runtime?.close();
      await bed.cleanup();
    });

    it("B's archive holds B's rows (the premise), and appears nowhere in A's container", async () => {
      const premise = await execCollect(docker, docker.getContainer(`sota-walreceiver-${b.slug}`), {
        cmd: ["sh", "-c", `grep -rlc "$0-${secret[1]}" ${ARCHIVE}/${bGeneration.id}`, secret[0]],
        user: "postgres",
      });
      expect(premise.stdout.trim()).not.toBe("");
      const outcome = await shell(
        [
          `grep -c sota-wal /proc/mounts`,
          `[ -e ${ARCHIVE} ] && echo "found ${ARCHIVE}"`,
          `b="${secret[0]}"`,
          `grep -rls --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e "$b-${secret[1]}" / | sed 's/^/B in /'`,
        ].join("\n"),
      );
      expect(outcome.output.split("\n")).toEqual(["0"]);
    });

    it("cannot resolve B's receiver, and reaches its own only by name: receivers listen on nothing", async () => {
      const bReceiver = await docker.getContainer(`sota-walreceiver-${b.slug}`).inspect();
      const bAddress = Object.values(bReceiver.NetworkSettings.Networks ?? {})[0]?.IPAddress ?? "";
      expect(bAddress).not.toBe("");
      const outcome = await shell(
        [
          `(timeout 8 getent hosts sota-walreceiver-${b.slug} >/dev/null && echo "resolved B" || echo "unknown B") &`,
          `(timeout 8 getent hosts sota-walreceiver-${a.slug} >/dev/null && echo "resolved A" || echo "unknown A") &`,
          `(timeout 8 bash -c "exec 3<>/dev/tcp/${bAddress}/5432" 2>/dev/null && echo "open B" || echo "closed B") &`,
          `(timeout 8 bash -c "exec 3<>/dev/tcp/sota-walreceiver-${a.slug}/5432" 2>/dev/null && echo "open A" || echo "closed A") &`,
          "wait",
        ].join("\n"),
      );
      expect(outcome.output.split("\n").sort()).toEqual(["closed A", "closed B", "resolved A", "unknown B"]);
    });

    it("runs its receiver as postgres with no capability, a read-only root and the private network only", async () => {
      const info = await docker.getContainer(`sota-walreceiver-${a.slug}`).inspect();
      expect(info.Config.User).toBe("postgres");
      expect(info.HostConfig.ReadonlyRootfs).toBe(true);
      expect(info.HostConfig.CapAdd ?? []).toEqual([]);
      expect(info.HostConfig.CapDrop).toEqual(["ALL"]);
      expect(info.HostConfig.SecurityOpt).toContain("no-new-privileges:true");
      expect(Object.keys(info.NetworkSettings.Networks ?? {})).toEqual([`sota-db-${a.slug}-net`]);
      expect(info.Mounts.filter((mount) => mount.Type === "volume").map((mount) => mount.Name)).toEqual([`sota-wal-${a.slug}`]);
      expect(await inReceiver("grep -E '^CapEff:' /proc/1/status")).toMatch(/^CapEff:\s+0+$/);
    });

    it("breaking its own WAL set-up (slot, replication role, pg_hba.conf line) breaks only its own archive; the next ensure repairs it in a new generation", async () => {
      const [before] = await runtime.pitr.walGenerations(a);
      await superuserSql(
        docker,
        aPostgres,
        [
          "ALTER ROLE sota_wal PASSWORD 'tenant-chose-this' SUPERUSER;",
          "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'sota_wal' AND active_pid IS NOT NULL;",
        ].join("\n"),
      );
      await shell(`sed -i '/sota_wal/d' "$(psql -XAtc 'SHOW hba_file' -d postgres)" && psql -XAtc 'SELECT pg_reload_conf()' -d postgres`);
      // The receiver may hold the slot again at once: dropped once it lets go.
      for (let attempt = 0; attempt < 50; attempt++) {
        const dropped = await superuserSql(
          docker,
          aPostgres,
          "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'sota_wal' AND active_pid IS NOT NULL; SELECT count(pg_drop_replication_slot('sota_wal')) FROM pg_replication_slots WHERE slot_name = 'sota_wal' AND NOT active;",
        ).catch(() => "");
        if (dropped.endsWith("1")) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await expect(runtime.pitr.flushWal(a)).rejects.toBeInstanceOf(RuntimeError);
      // B streams on, untouched.
      await runtime.pitr.flushWal(b);
      expect((await runtime.pitr.walGenerations(b)).map((generation) => generation.id)).toEqual([bGeneration.id]);

      await runtime.ensure(a);
      await runtime.pitr.flushWal(a);
      const generations = await runtime.pitr.walGenerations(a);
      expect(generations.map((generation) => generation.id)).toEqual([before?.id, expect.any(String)]);
      expect(generations.at(-1)?.streaming).toBe(true);
      const role = await runtime.adminQuery(a, "SELECT rolsuper::text AS su FROM pg_roles WHERE rolname = 'sota_wal'");
      expect(role).toEqual([{ su: "false" }]);
    });

    describe("links planted in its archive", () => {
      let current: WalGeneration;
      const decoy = `decoy-${randomBytes(4).toString("hex")}`;

      beforeAll(async () => {
        current = (await runtime.pitr.walGenerations(a)).at(-1) as WalGeneration;
        // A decoy the links lead to, and links under names the service would take for its own.
        await inReceiver(
          [
            `cd ${ARCHIVE}`,
            `mkdir -p ${decoy} && echo decoy-content > ${decoy}/000000010000000000000001`,
            `ln -s /etc/passwd ${current.id}/0000000100000000000000F0`,
            `ln -s ${ARCHIVE}/${decoy}/000000010000000000000001 ${current.id}/0000000100000000000000F1`,
            `ln -s ${ARCHIVE}/${decoy} 20000101T000000Z`,
          ].join(" && "),
        );
      });

      it("lists none of them: neither the linked segments nor the linked generation", async () => {
        const generations = await runtime.pitr.walGenerations(a);
        expect(generations.map((generation) => generation.id)).not.toContain("20000101T000000Z");
        const names = generations.flatMap((generation) => generation.segments.map((segment) => segment.name));
        expect(names).not.toContain("0000000100000000000000F0");
        expect(names).not.toContain("0000000100000000000000F1");
        // The real files are listed: the listing works.
        expect(generations.at(-1)?.segments.length).toBeGreaterThan(0);
      });

      it("reads none of them", async () => {
        for (const [generation, name] of [
          [current.id, "0000000100000000000000F0"],
          [current.id, "0000000100000000000000F1"],
          ["20000101T000000Z", "000000010000000000000001"],
        ] as const) {
          const error = await collect(runtime.pitr.readWal(a, generation, name)).catch((reason: unknown) => reason);
          expect(error, `${generation}/${name}`).toBeInstanceOf(RuntimeError);
          expect(String((error as Error).message)).not.toMatch(/root:|decoy-content/);
        }
        // A real segment reads.
        const real = current.segments.find((segment) => segment.complete) ?? current.segments[0];
        expect((await collect(runtime.pitr.readWal(a, current.id, real!.name))).length).toBe(real!.bytes);
      });

      it("prunes through none of them: a link goes, what it leads to stays", async () => {
        await runtime.pitr.pruneWal(a, new Map([[current.id, "0000000100000000000000FF"]]));
        expect(await inReceiver(`cat ${ARCHIVE}/${decoy}/000000010000000000000001`)).toBe("decoy-content");
        expect(await inReceiver("head -c 5 /etc/passwd")).toBe("root:");
        // The current generation's own old segments were pruned: pruning works.
        const after = (await runtime.pitr.walGenerations(a)).at(-1) as WalGeneration;
        expect(after.segments.filter((segment) => segment.name < "0000000100000000000000FF" && segment.complete)).toEqual([]);
      });
    });

    describe("a base backup carrying links", () => {
      it("is extracted as the postgres user with no other project's volume in reach: the links lead nowhere, the recovery is refused and A serves on", async () => {
        const generation = (await runtime.pitr.walGenerations(a)).at(-1) as WalGeneration;
        const bArchive = `sota-wal-${b.slug}`;
        // A tar whose later entries go through its own links: into the WAL
        // archive's mount, the image's files, and B's archive by its host path.
        const bMountpoint = (await docker.getVolume(bArchive).inspect()).Mountpoint;
        const crafted = Buffer.concat([
          tarEntry("to-archive", "2", "", ARCHIVE),
          tarEntry("to-archive/planted", "0", "planted by a tenant\n"),
          tarEntry("to-etc", "2", "", "/etc"),
          tarEntry("to-etc/planted", "0", "planted by a tenant\n"),
          tarEntry("to-b", "2", "", bMountpoint),
          tarEntry("to-b/planted", "0", "planted by a tenant\n"),
          tarEntry("../../planted", "0", "planted by a tenant\n"),
          Buffer.alloc(1024, 0),
        ]);
        const error = await runtime.pitr
          .recover(a, Readable.from([crafted]), { source: a, generation: generation.id })
          .catch((reason: unknown) => reason);
        expect(error).toBeInstanceOf(RuntimeError);
        // Nothing landed in either archive, and A serves as before.
        expect(await inReceiver(`find ${ARCHIVE} -name planted | wc -l`)).toBe("0");
        const bPlanted = await execCollect(docker, docker.getContainer(`sota-walreceiver-${b.slug}`), {
          cmd: ["sh", "-c", `find ${ARCHIVE} -name planted | wc -l`],
          user: "postgres",
        });
        expect(bPlanted.stdout.trim()).toBe("0");
        expect(await runtime.appQuery(a, "SELECT 1::text AS up")).toEqual([{ up: "1" }]);
        expect((await runtime.pitr.walGenerations(a)).at(-1)?.id).toBe(generation.id);
      });

      it("recovers a real backup of a cluster whose tenant planted links in its data directory: they are left out, none is followed", async () => {
        const planted = await shell(`cd "$PGDATA" && ln -s /etc/passwd planted-passwd && ln -s ${ARCHIVE} planted-archive && ls planted-*`);
        expect(planted.output.split("\n")).toEqual(["planted-archive", "planted-passwd"]);
        await runtime.appQuery(a, "CREATE TABLE public.kept AS SELECT 42 AS v");
        const backup = runtime.pitr.baseBackup(a);
        const base = await collect(backup.stream);
        const info = await backup.info;
        await runtime.pitr.flushWal(a);
        const { result } = await runtime.pitr.recover(a, Readable.from([base]), { source: a, generation: info.generation });
        expect(result.endpoint.loopback).toBeDefined();
        expect(await runtime.appQuery(a, "SELECT v::text FROM public.kept")).toEqual([{ v: "42" }]);
        // pg_basebackup skips links outside pg_tblspc ("skipping special file"): the recovered cluster has none of them.
        const after = await shell(`cd "$PGDATA" && ls -d planted-* 2>/dev/null | wc -l; head -n 1 /etc/passwd | cut -c1-5`);
        expect(after.output.split("\n")).toEqual(["0", "root:"]);
      });
    });

    it("cannot use the replication role from the app network, even knowing its password", async () => {
      const receiver = await docker.getContainer(`sota-walreceiver-${a.slug}`).inspect();
      const password = receiver.Config.Env.find((entry) => entry.startsWith("PGPASSWORD="))?.slice("PGPASSWORD=".length) ?? "";
      expect(password).not.toBe("");
      const attempt = await bed.runClient(
        bed.appNetwork,
        [
          `psql "host=sota-pgbouncer-${a.slug} port=5432 user=sota_wal dbname=${a.slug} connect_timeout=5" -XAtc 'SELECT 1' 2>&1 | tail -1`,
          `pg_receivewal -h sota-pgbouncer-${a.slug} -p 5432 -U sota_wal -D /tmp --no-loop 2>&1 | tail -1`,
          `psql "host=sota-db-${a.slug} port=5432 user=sota_wal dbname=postgres connect_timeout=5" -XAtc 'SELECT 1' 2>&1 | tail -1`,
          `psql "postgresql://app_${a.slug}:${a.password}@sota-pgbouncer-${a.slug}:5432/${a.slug}" -XAtc "SELECT 'app-ok'"`,
        ].join("\n"),
        [`PGPASSWORD=${password}`],
      );
      const lines = attempt.output.trim().split("\n");
      expect(lines).toHaveLength(4);
      expect(lines.slice(0, 3).every((line) => /error|failed|could not|not known|FATAL/i.test(line)), attempt.output).toBe(true);
      // The same client reaches A's pooler as the app: the probe works.
      expect(lines[3]).toBe("app-ok");
    });
  });
});
