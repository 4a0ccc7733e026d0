// What PgBouncer's config depends on and only its image can tell: its version
// (max_prepared_statements exists from 1.21), the OS user it runs as (the
// image's own, see pgbouncer-os-user.ts) and the ids its files must belong to
// (it reads them as that user). Read once per image id, by
// a short-lived container, for the runtime's life.
import { PassThrough } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import { hardenedHostConfig, PGBOUNCER_HARDENING } from "./container-hardening.js";
import type { DockerEngine } from "./docker-engine.js";
import { projectLabels } from "./docker-names.js";
import { pgbouncerOsUser } from "./pgbouncer-os-user.js";

export interface PgbouncerImageFacts {
  readonly version: string;
  /** The container's User: PgBouncer and the driver's execs run as it. */
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
}

export class PgbouncerImageFactsCache {
  private readonly facts = new Map<string, Promise<PgbouncerImageFacts>>();

  constructor(
    private readonly engine: DockerEngine,
    private readonly image: string,
    private readonly configuredUser?: string,
  ) {}

  async get(target: RuntimeTarget): Promise<PgbouncerImageFacts> {
    const image = await this.engine.call(`inspecting image ${this.image}`, () =>
      this.engine.docker.getImage(this.image).inspect(),
    );
    let facts = this.facts.get(image.Id);
    if (!facts) {
      const user = pgbouncerOsUser(this.configuredUser, image.Config?.User);
      facts = this.probe(target, user).catch((error: unknown) => {
        this.facts.delete(image.Id);
        throw error;
      });
      this.facts.set(image.Id, facts);
    }
    return facts;
  }

  private async probe(target: RuntimeTarget, user: string): Promise<PgbouncerImageFacts> {
    const { engine } = this;
    return engine.call(`reading PgBouncer's version from ${this.image}`, async () => {
      // AutoRemove: the engine removes it once it exits, even if this service does not live to.
      const container = await engine.docker.createContainer({
        Image: this.image,
        Entrypoint: ["/bin/sh", "-c", 'echo "ids $(id -u) $(id -g)"; exec pgbouncer --version'],
        Cmd: [],
        User: user,
        Labels: projectLabels(target, "probe", engine.labels),
        HostConfig: { Runtime: "runc", NetworkMode: "none", AutoRemove: true, ...hardenedHostConfig(PGBOUNCER_HARDENING) },
      });
      const chunks: Buffer[] = [];
      try {
        const output = new PassThrough();
        output.on("data", (chunk: Buffer) => chunks.push(chunk));
        const stream = await container.attach({ stream: true, stdout: true, stderr: true });
        const ended = new Promise<void>((resolve) => {
          stream.once("end", resolve);
          stream.once("close", resolve);
          stream.once("error", () => resolve());
        });
        engine.docker.modem.demuxStream(stream, output, output);
        await container.start().catch((error: unknown) => {
          // The engine refuses to start a container whose user the image lacks.
          if (/unable to find user|no matching entries in passwd/i.test(String(error))) {
            throw new RuntimeError(
              "failed",
              `image ${this.image} has no OS user "${user}" to run PgBouncer as: set SOTA_PGBOUNCER_USER to one it has (PgBouncer refuses root)`,
            );
          }
          throw error;
        });
        await Promise.race([ended, sleep(30_000)]);
      } catch (error) {
        await container.remove({ force: true }).catch(() => undefined);
        throw error;
      }
      const text = Buffer.concat(chunks).toString("utf8");
      const version = /PgBouncer (\d+\.\d+(?:\.\d+)?)/i.exec(text)?.[1];
      const ids = /^ids (\d+) (\d+)$/m.exec(text);
      if (!version || !ids) {
        throw new RuntimeError(
          "failed",
          `image ${this.image} did not report a PgBouncer version when run as OS user "${user}"`,
        );
      }
      return { version, user, uid: Number(ids[1]), gid: Number(ids[2]) };
    });
  }
}
