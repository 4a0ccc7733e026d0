// Defense in depth in the Docker runtime: a tenant that has become superuser
// of its own cluster anyway (the next PostgreSQL CVE) runs shell commands in
// its PostgreSQL container as the postgres OS user (COPY ... FROM PROGRAM)
// and tries to reach another project, the host, the Docker engine and root.
// Every attempt must fail; each is paired with the same attempt against
// something it may reach, so a probe that cannot work proves nothing.
//
// Traffic stays on the networks this run creates: the test process itself
// talks to containers only through docker exec, and its one listener is on
// this run's app network's gateway address.
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:net";
import type Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isHardened, PGBOUNCER_HARDENING, POSTGRES_HARDENING } from "../../src/runtime/docker/container-hardening.js";
import { execCollect } from "../../src/runtime/docker/docker-exec.js";
import { projectLabels } from "../../src/runtime/docker/docker-names.js";
import type { DockerRuntime } from "../../src/runtime/docker/index.js";
import type { DatabaseSpec } from "../../src/runtime/runtime.js";
import { DockerTestBed, ensureTestImages, probeDockerEngine , describeWithDocker } from "../support/docker-test-bed.js";
import { shellAsTenantSuperuser, superuserSql } from "../support/tenant-superuser.js";

const engine = await probeDockerEngine();
const MEMORY_MB = 256;

/** Addresses of a container on each of its networks. */
function addresses(info: Docker.ContainerInspectInfo): string[] {
  return Object.values(info.NetworkSettings.Networks ?? {})
    .map((network) => network.IPAddress)
    .filter(Boolean);
}

/** A shell function that says, per host, whether a TCP connection to it opens. */
const TCP_PROBE = `probe() { if timeout 8 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; then echo "open $1"; else echo "closed $1"; fi; }`;

/** The capabilities a set of names adds up to, as /proc/PID/status prints them. */
function capabilityMask(names: readonly string[]): bigint {
  const bits: Record<string, number> = { CHOWN: 0, DAC_OVERRIDE: 1, DAC_READ_SEARCH: 2, FOWNER: 3, FSETID: 4, KILL: 5, SETGID: 6, SETUID: 7 };
  return names.reduce((mask, name) => mask | (1n << BigInt(bits[name] ?? 63)), 0n);
}

describeWithDocker("Docker tenant boundary", engine, () => {
  describe("Docker runtime: a tenant superuser of its own cluster", () => {
    const bed = new DockerTestBed();
    const docker = bed.docker;
    let runtime: DockerRuntime;
    const spec = (name: string): DatabaseSpec => ({
      projectId: randomUUID(),
      slug: `${name}-${bed.runId}`,
      password: randomBytes(16).toString("hex"),
    });
    const a = spec("tenant-a");
    const b = spec("tenant-b");
    const aPostgres = `sota-db-${a.slug}`;
    const shell = (script: string) => shellAsTenantSuperuser(docker, aPostgres, script);
    // Split so that no command line (nor this file's text in a process list) holds it whole.
    const secret = ["b-secret", randomBytes(8).toString("hex")] as const;
    const own = ["a-own", randomBytes(8).toString("hex")] as const;

    beforeAll(async () => {
      await ensureTestImages();
      // The shared app network, as with the product spec's traefik-public; a memory limit a test can exceed cheaply.
      runtime = bed.runtime({ postgresMemoryMb: MEMORY_MB });
      await Promise.all([runtime.ensure(a), runtime.ensure(b)]);
      await superuserSql(docker, `sota-db-${b.slug}`, `CREATE TABLE public.secret AS SELECT '${secret.join("-")}' AS v; CHECKPOINT;`, b.slug);
      await superuserSql(docker, aPostgres, `CREATE TABLE own AS SELECT '${own.join("-")}' AS v; CHECKPOINT;`, a.slug);
    });

    afterAll(async () => {
      await runtime?.close();
      await bed.cleanup();
    });

    it("runs shell commands in its container as the postgres OS user (the premise)", async () => {
      const outcome = await shell("id -un");
      expect(outcome).toEqual({ exitCode: 0, output: "postgres" });
    });

    it("cannot resolve nor connect to B's PostgreSQL or PgBouncer, by name or by any of their addresses", async () => {
      const inspect = (name: string) => docker.getContainer(name).inspect();
      const [bPostgres, bPgbouncer, aPgbouncer] = await Promise.all([
        inspect(`sota-db-${b.slug}`),
        inspect(`sota-pgbouncer-${b.slug}`),
        inspect(`sota-pgbouncer-${a.slug}`),
      ]);
      const forbidden = [`sota-db-${b.slug}`, `sota-pgbouncer-${b.slug}`, ...addresses(bPostgres), ...addresses(bPgbouncer)];
      // Its own PgBouncer shares its private network: what the probe reaches when nothing is in the way.
      const ownPgbouncerIp = aPgbouncer.NetworkSettings.Networks?.[`sota-db-${a.slug}-net`]?.IPAddress ?? "";
      const allowed = [`sota-pgbouncer-${a.slug}`, ownPgbouncerIp];
      // In parallel: an unknown name takes the embedded DNS seconds to give up on.
      const resolve = await shell(
        [
          ...[`sota-db-${b.slug}`, `sota-pgbouncer-${b.slug}`, `sota-pgbouncer-${a.slug}`].map(
            (name) => `(timeout 8 getent hosts ${name} >/dev/null && echo "resolved ${name}" || echo "unknown ${name}") &`,
          ),
          "wait",
        ].join("\n"),
      );
      expect(resolve.output.split("\n").sort()).toEqual(
        [`unknown sota-db-${b.slug}`, `unknown sota-pgbouncer-${b.slug}`, `resolved sota-pgbouncer-${a.slug}`].sort(),
      );
      const connect = await shell([TCP_PROBE, ...[...forbidden, ...allowed].map((host) => `probe ${host} 5432 &`), "wait"].join("\n"));
      expect(connect.output.split("\n").sort()).toEqual(
        [...forbidden.map((host) => `closed ${host}`), ...allowed.map((host) => `open ${host}`)].sort(),
      );
    });

    describe("the host", () => {
      let listener: Server;
      let gateway: string;
      let port: number;
      const accepted: string[] = [];

      beforeAll(async () => {
        // A service of the host's, on the address the host holds on this run's app network.
        const network = await docker.getNetwork(bed.appNetwork).inspect();
        gateway = network.IPAM?.Config?.[0]?.Gateway ?? "";
        expect(gateway).not.toBe("");
        listener = createServer((socket) => {
          accepted.push(socket.remoteAddress ?? "");
          socket.destroy();
        });
        await new Promise<void>((resolve, reject) => {
          listener.once("error", reject);
          listener.listen({ host: gateway, port: 0 }, resolve);
        });
        port = (listener.address() as { port: number }).port;
      });

      afterAll(async () => {
        await new Promise((resolve) => listener?.close(resolve));
      });

      it("is out of reach: no address of the host answers from the tenant's private network", async () => {
        // Its default gateway, read from the routing table, is where an internal network still leads.
        const outcome = await shell(
          [
            TCP_PROBE,
            `probe ${gateway} ${port}`,
            // Little-endian hex in /proc/net/route: the last byte pair is the first octet.
            `h=$(awk '$2 == "00000000" { print $3; exit }' /proc/net/route)`,
            `[ -n "$h" ] && probe "$(printf '%d.%d.%d.%d' 0x$(echo $h | cut -c7-8) 0x$(echo $h | cut -c5-6) 0x$(echo $h | cut -c3-4) 0x$(echo $h | cut -c1-2))" ${port}`,
          ].join("\n"),
        );
        expect(outcome.output.split("\n")).toEqual([`closed ${gateway}`, expect.stringMatching(/^closed \d+\.\d+\.\d+\.\d+$/)]);
        // The same listener, from A's PgBouncer (on the app network), answers: the probe works.
        const control = await execCollect(docker, docker.getContainer(`sota-pgbouncer-${a.slug}`), {
          cmd: ["bash", "-c", `${TCP_PROBE}; probe ${gateway} ${port}`],
          user: "pgbouncer",
        });
        expect(control.stdout.trim()).toBe(`open ${gateway}`);
        const aPostgresAddresses = addresses(await docker.getContainer(aPostgres).inspect());
        expect(accepted.length).toBeGreaterThan(0);
        expect(accepted.filter((peer) => aPostgresAddresses.some((ip) => peer.endsWith(ip)))).toEqual([]);
      });

      it("finds no Docker socket to take the engine with", async () => {
        const outcome = await shell(
          "for s in /var/run/docker.sock /run/docker.sock /var/run/docker/docker.sock; do [ -e $s ] && echo \"found $s\"; done; grep -c docker.sock /proc/mounts",
        );
        expect(outcome.output).toBe("0");
      });
    });

    it("sees no other volume than its own: B's data appears nowhere in its file system", async () => {
      const bVolume = await docker.getVolume(`sota-db-${b.slug}-data`).inspect();
      const outcome = await shell(
        [
          `[ -e "${bVolume.Mountpoint}" ] && echo "found ${bVolume.Mountpoint}"`,
          `grep -c "sota-db-${b.slug}" /proc/mounts`,
          // Split as above: the pattern is put together only inside the shell.
          `b="${secret[0]}"; a="${own[0]}"`,
          `grep -rls --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e "$b-${secret[1]}" / | sed 's/^/B in /'`,
          `grep -rls -e "$a-${own[1]}" /var/lib/postgresql/data >/dev/null && echo "A's own data found"`,
        ].join("\n"),
      );
      expect(outcome.output.split("\n")).toEqual(["0", "A's own data found"]);
    });

    describe("becoming root in its own container", () => {
      it("has no password to su with and no sudo", async () => {
        const outcome = await shell("su root -c id </dev/null >/dev/null 2>&1 && echo 'su worked'; command -v sudo || echo 'no sudo'");
        expect(outcome.output).toBe("no sudo");
      });

      it("gets no root from a setuid-root binary of the image (no-new-privileges)", async () => {
        // su waits for a password on a FIFO while its credentials are read,
        // then gets end of input and exits. A setuid bug's first step is this
        // effective uid 0; with no-new-privileges the kernel never grants it.
        const outcome = await shell(
          [
            "f=$(mktemp -u); mkfifo $f",
            "su root -c true <$f >/dev/null 2>&1 & p=$!",
            "exec 3>$f; rm $f",
            'i=0; while [ "$(cat /proc/$p/comm 2>/dev/null)" != su ] && [ $i -lt 200 ]; do i=$((i+1)); sleep 0.05; done',
            "grep -E '^(Uid|CapEff):' /proc/$p/status",
            "exec 3>&-; wait $p",
          ].join("\n"),
        );
        const uid = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(outcome.output);
        expect(uid, outcome.output).not.toBeNull();
        const [real, effective, saved] = [uid?.[1], uid?.[2], uid?.[3]];
        expect(real).not.toBe("0");
        expect({ effective, saved }).toEqual({ effective: real, saved: real });
        expect(outcome.output).toMatch(/^CapEff:\s+0+$/m);
      });

      it("holds no capability, and can never gain one beyond what the image's entrypoint needs", async () => {
        const outcome = await shell("grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status");
        const field = (name: string) => new RegExp(`^${name}:\\s+(\\S+)$`, "m").exec(outcome.output)?.[1];
        expect(field("CapEff")).toMatch(/^0+$/);
        expect(field("NoNewPrivs")).toBe("1");
        const bounding = BigInt(`0x${field("CapBnd") ?? "f"}`);
        // Among them no NET_RAW (spoofing on the shared network), MKNOD, SYS_CHROOT, KILL, SETFCAP...
        expect(bounding & ~capabilityMask(POSTGRES_HARDENING.capabilities)).toBe(0n);
      });
    });

    describe("containers made before the driver hardened them", () => {
      const c = spec("tenant-c");
      const cPostgres = `sota-db-${c.slug}`;
      const cPgbouncer = `sota-pgbouncer-${c.slug}`;

      /** The container again under its name, from its own settings minus the hardening. */
      async function recreateUnhardened(name: string): Promise<string> {
        const info = await docker.getContainer(name).inspect();
        await docker.getContainer(name).remove({ force: true });
        const host = info.HostConfig;
        const old = await docker.createContainer({
          name,
          Image: info.Config.Image,
          Env: info.Config.Env,
          User: info.Config.User,
          ExposedPorts: info.Config.ExposedPorts,
          Labels: info.Config.Labels,
          StopSignal: "SIGINT",
          HostConfig: {
            Runtime: host.Runtime,
            RestartPolicy: host.RestartPolicy,
            NetworkMode: host.NetworkMode,
            ...(host.Mounts ? { Mounts: host.Mounts } : {}),
          },
        });
        await old.start();
        return old.id;
      }

      beforeAll(async () => {
        // Its private network as the driver made it before: internal, with an address of the host on it.
        await docker.createNetwork({
          Name: `sota-db-${c.slug}-net`,
          Driver: "bridge",
          Internal: true,
          Labels: projectLabels(c, "private-network", bed.label),
        });
        await runtime.ensure(c);
        await superuserSql(docker, cPostgres, "CREATE TABLE kept AS SELECT 1 AS v;", c.slug);
      });

      it("keeps PostgreSQL's (pids limit set in place, a warning says how to harden it), re-creates PgBouncer's", async () => {
        const oldPostgres = await recreateUnhardened(cPostgres);
        const oldPgbouncer = await recreateUnhardened(cPgbouncer);
        await runtime.ensure(c);
        const postgres = await docker.getContainer(cPostgres).inspect();
        expect(postgres.Id).toBe(oldPostgres);
        expect(postgres.HostConfig.PidsLimit).toBe(POSTGRES_HARDENING.pidsLimit);
        expect(postgres.HostConfig.Memory).toBe(MEMORY_MB * 1024 * 1024);
        expect(bed.logs.text()).toContain("PostgreSQL container predates the driver's hardening");
        expect(bed.logs.text()).toContain("network lacks options it is now created with; keeping it");
        const pgbouncer = await docker.getContainer(cPgbouncer).inspect();
        expect(pgbouncer.Id).not.toBe(oldPgbouncer);
        expect(isHardened(pgbouncer, PGBOUNCER_HARDENING)).toBe(true);
        expect(await superuserSql(docker, cPostgres, "SELECT count(*) FROM kept", c.slug)).toBe("1");
      });

      it("hardens PostgreSQL's and the network once the operator removes them as docs/docker.md says, on the same data", async () => {
        // Its WAL receiver is on the network too (set up once ensure has returned; pitr's calls wait for it).
        await runtime.pitr.walGenerations(c);
        await Promise.all([cPostgres, cPgbouncer, `sota-walreceiver-${c.slug}`].map((name) => docker.getContainer(name).remove({ force: true })));
        await docker.getNetwork(`sota-db-${c.slug}-net`).remove();
        await runtime.ensure(c);
        expect(isHardened(await docker.getContainer(cPostgres).inspect(), POSTGRES_HARDENING)).toBe(true);
        const network = await docker.getNetwork(`sota-db-${c.slug}-net`).inspect();
        expect(network.Options).toMatchObject({ "com.docker.network.bridge.inhibit_ipv4": "true" });
        expect(await superuserSql(docker, cPostgres, "SELECT count(*) FROM kept", c.slug)).toBe("1");
      });
    });

    it("runs out of memory inside its own container's limit; both clusters still answer", async () => {
      // One backend holding more than the limit: the kernel kills it in A's
      // container, PostgreSQL restarts its backends, and nothing else moves.
      await expect(superuserSql(docker, aPostgres, `SELECT length(repeat('x', ${MEMORY_MB + 150} * 1024 * 1024))`)).rejects.toThrow(
        /closed the connection|terminat|out of memory|connection to server was lost/i,
      );
      expect(await superuserSql(docker, `sota-db-${b.slug}`, "SELECT count(*) FROM public.secret", b.slug)).toBe("1");
      let answer = "";
      for (let attempt = 0; attempt < 60 && answer !== "1"; attempt++) {
        answer = await superuserSql(docker, aPostgres, "SELECT count(*) FROM own", a.slug).catch(async () => {
          await new Promise((resolve) => setTimeout(resolve, 500));
          return "";
        });
      }
      expect(answer).toBe("1");
    });

    it("keeps a fork bomb inside its own container's pids limit; both clusters still answer", async () => {
      const attempts = POSTGRES_HARDENING.pidsLimit + 100;
      // Only shell builtins once the bomb has gone off (a fork may fail
      // then); the sleeps end on their own, with status 0, so that the
      // postmaster, their new parent, does not take them for crashed backends.
      const outcome = await shell(
        [
          `( i=0; while [ $i -lt ${attempts} ]; do i=$((i+1)); sleep 20 </dev/null >/dev/null 2>&1 & done ) 2>/dev/null`,
          'n=0; for d in /proc/[0-9]*; do c=""; read c 2>/dev/null <$d/comm; [ "$c" = sleep ] && n=$((n+1)); done',
          'echo "sleeps $n"',
        ].join("\n"),
      );
      const started = Number(/sleeps (\d+)/.exec(outcome.output)?.[1]);
      expect(started).toBeGreaterThan(0);
      expect(started).toBeLessThan(POSTGRES_HARDENING.pidsLimit);
      expect(await superuserSql(docker, `sota-db-${b.slug}`, "SELECT count(*) FROM public.secret", b.slug)).toBe("1");
      // Bounded wait for the sleeps to end, so the next test starts clean.
      for (let attempt = 0; attempt < 60; attempt++) {
        const left = await shell('n=0; for d in /proc/[0-9]*; do c=""; read c 2>/dev/null <$d/comm; [ "$c" = sleep ] && n=$((n+1)); done; echo $n').catch(
          () => ({ exitCode: 1, output: "busy" }),
        );
        if (/^0$/m.test(left.output)) break;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
      expect(await superuserSql(docker, aPostgres, "SELECT count(*) FROM own", a.slug)).toBe("1");
    });
  });
});
