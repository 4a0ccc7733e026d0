// The engine as the driver sees it: every call turned into a RuntimeError that
// says what was being done, and the few container operations every step needs
// (look up by name, create with the project's labels, start, exec).
import { setTimeout as sleep } from "node:timers/promises";
import type Docker from "dockerode";
import type { Logger } from "../../log.js";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import { engineMessage, isConflict, isNotFound, statusCodeOf, toRuntimeError } from "./docker-errors.js";
import { execCollect, type CollectedExec, type ExecSpec } from "./docker-exec.js";
import { ownershipProblem, projectLabels, type ObjectRole } from "./docker-names.js";

const PING_TIMEOUT_MS = 5_000;

export function isRunning(info: Docker.ContainerInspectInfo | undefined): boolean {
  return Boolean(info?.State.Running && !info.State.Restarting && !info.State.Paused);
}

/** A container the engine made but never ran: what an ensure cut short between create and start leaves. */
export function neverStarted(info: Docker.ContainerInspectInfo): boolean {
  return !info.State.Running && info.State.StartedAt.startsWith("0001-");
}

export function describeEngine(docker: Docker): string {
  const modem = docker.modem as unknown as { socketPath?: string; host?: string; port?: string | number; protocol?: string };
  if (modem.socketPath) return `unix://${modem.socketPath}`;
  return `${modem.protocol ?? "http"}://${modem.host ?? "localhost"}:${String(modem.port ?? "")}`;
}

export class DockerEngine {
  readonly endpoint: string;

  constructor(
    readonly docker: Docker,
    readonly logger: Logger,
    /** Extra labels put on everything the driver creates. */
    readonly labels: Readonly<Record<string, string>>,
  ) {
    this.endpoint = describeEngine(docker);
  }

  async ping(): Promise<void> {
    try {
      await Promise.race([
        this.docker.ping(),
        sleep(PING_TIMEOUT_MS, undefined, { ref: false }).then(() => {
          throw Object.assign(new Error("no answer"), { code: "ETIMEDOUT" });
        }),
      ]);
    } catch (error) {
      const detail = (error as { code?: string }).code ?? engineMessage(error);
      throw new RuntimeError("unavailable", `Docker engine unreachable at ${this.endpoint} (${detail})`, { cause: error });
    }
  }

  /** Runs an engine call, turning its failure into a RuntimeError that says what was being done. */
  async call<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw toRuntimeError(error, what, this.endpoint);
    }
  }

  async inspectContainer(name: string): Promise<Docker.ContainerInspectInfo | undefined> {
    return this.call(`inspecting container ${name}`, async () => {
      try {
        return await this.docker.getContainer(name).inspect();
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  /**
   * Creates a project's container under `name`, or finds the one a racing
   * creator made; either way it must be this project's `role`.
   */
  async createContainer(
    target: RuntimeTarget,
    name: string,
    role: ObjectRole,
    options: Docker.ContainerCreateOptions,
  ): Promise<Docker.ContainerInspectInfo> {
    await this.call(`creating container ${name}`, async () => {
      try {
        // Labels of the caller's own (the WAL generation a receiver streams into) come first: the project's cannot be overridden.
        await this.docker.createContainer({ ...options, name, Labels: { ...options.Labels, ...projectLabels(target, role, this.labels) } });
        this.logger.info({ container: name, image: options.Image }, "container created");
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    });
    // A creator racing us holds the name a moment before the container can be inspected.
    let info = await this.inspectContainer(name);
    for (let attempt = 0; !info && attempt < 20; attempt++) {
      await sleep(250);
      info = await this.inspectContainer(name);
    }
    if (!info) throw new RuntimeError("failed", `container ${name} disappeared right after it was created`);
    const problem = ownershipProblem("container", name, info.Config.Labels, target, role);
    if (problem) throw new RuntimeError("conflict", problem);
    return info;
  }

  /** Starts the container; false when it was already running (started meanwhile by another process). */
  async startContainer(container: Docker.Container, name: string): Promise<boolean> {
    return this.call(`starting container ${name}`, async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          await container.start();
          this.logger.info({ container: name }, "container started");
          return true;
        } catch (error) {
          if (statusCodeOf(error) === 304) return false;
          // A twin network made by a racing service process, about to be
          // removed by it (see docker-networks.ts): the engine resolves the
          // container's networks by name at start.
          if (attempt < 20 && /ambiguous/i.test(engineMessage(error))) {
            await sleep(250);
            continue;
          }
          throw error;
        }
      }
    });
  }

  exec(
    container: Docker.Container,
    what: string,
    spec: ExecSpec,
    options?: { readonly discardStdout?: boolean },
  ): Promise<CollectedExec> {
    return this.call(what, () => execCollect(this.docker, container, spec, options));
  }

  /** An exec that may find its container not (yet) running: undefined then. */
  async tryExec(container: Docker.Container, spec: ExecSpec): Promise<CollectedExec | undefined> {
    try {
      return await execCollect(this.docker, container, spec);
    } catch (error) {
      const status = statusCodeOf(error);
      if (status === 409 || status === 404) return undefined;
      throw toRuntimeError(error, "running a command in a container", this.endpoint);
    }
  }

  /** A running container of this project, or a clear error saying why not. */
  async runningContainer(target: RuntimeTarget, name: string, role: ObjectRole): Promise<Docker.Container> {
    const info = await this.inspectContainer(name);
    if (!info) throw new RuntimeError("unavailable", `database ${target.slug} has no container ${name}; ensure it first`);
    const problem = ownershipProblem("container", name, info.Config.Labels, target, role);
    if (problem) throw new RuntimeError("conflict", problem);
    if (!isRunning(info)) {
      throw new RuntimeError("unavailable", `container ${name} is ${info.State.Status}; ensure the database first`);
    }
    return this.docker.getContainer(info.Id);
  }
}
