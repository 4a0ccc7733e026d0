// Networks by name. Unlike containers and volumes, the engine lets two
// networks share a name (CheckDuplicate is only a best effort), so two service
// processes ensuring at once can make twins. Every process settles on the same
// one, the oldest, refers to it by id, and removes the managed twins.
import type Docker from "dockerode";
import type { Logger } from "../../log.js";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import { engineMessage, isConflict, isNotFound, statusCodeOf, toRuntimeError } from "./docker-errors.js";
import { LABEL_MANAGED, ownershipProblem, type ObjectRole } from "./docker-names.js";

export interface NetworkOwner {
  readonly target: RuntimeTarget;
  readonly role: ObjectRole;
}

export interface WantedNetwork {
  readonly name: string;
  /** Internal networks have no route out of the host. */
  readonly internal: boolean;
  readonly labels: Record<string, string>;
  /** Driver options; a network found without them was made before they were asked for, and is kept (logged). */
  readonly options?: Readonly<Record<string, string>>;
  /** Set for a project's own network: one under its name without these labels is a conflict. */
  readonly owner?: NetworkOwner;
}

/** Nanosecond-precise order of the engine's RFC 3339 timestamps. */
function createdKey(created: string | undefined): [number, string] {
  const match = /^(.*?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(created ?? "");
  if (!match) return [Number.MAX_SAFE_INTEGER, ""];
  return [Date.parse(`${match[1]}${match[3]}`), (match[2] ?? "").padEnd(9, "0")];
}

function oldestFirst(a: Docker.NetworkInspectInfo, b: Docker.NetworkInspectInfo): number {
  const [aSeconds, aFraction] = createdKey(a.Created);
  const [bSeconds, bFraction] = createdKey(b.Created);
  return aSeconds - bSeconds || aFraction.localeCompare(bFraction) || a.Id.localeCompare(b.Id);
}

export class DockerNetworks {
  constructor(
    private readonly docker: Docker,
    private readonly logger: Logger,
    private readonly engine: string,
  ) {}

  /** Every network named exactly `name`, oldest first. */
  async find(name: string): Promise<Docker.NetworkInspectInfo[]> {
    try {
      // The engine's name filter matches substrings.
      const listed = await this.docker.listNetworks({ filters: { name: [name] } });
      return listed.filter((network) => network.Name === name).sort(oldestFirst);
    } catch (error) {
      throw toRuntimeError(error, `listing networks named ${name}`, this.engine);
    }
  }

  /** Throws a conflict when a network under the name is not the owner's. */
  async checkOwned(name: string, owner: NetworkOwner): Promise<Docker.NetworkInspectInfo[]> {
    const found = await this.find(name);
    for (const network of found) {
      const problem = ownershipProblem("network", name, network.Labels, owner.target, owner.role);
      if (problem) throw new RuntimeError("conflict", problem);
    }
    return found;
  }

  /** The id of the one network under `wanted.name`, created when missing. */
  async ensure(wanted: WantedNetwork): Promise<string> {
    const current = (): Promise<Docker.NetworkInspectInfo[]> =>
      wanted.owner ? this.checkOwned(wanted.name, wanted.owner) : this.find(wanted.name);
    let found = await current();
    if (found.length === 0) {
      await this.create(wanted);
      found = await current();
    }
    const [chosen, ...twins] = found;
    if (!chosen) throw new RuntimeError("failed", `network ${wanted.name} disappeared right after it was created`);
    for (const twin of twins) {
      if (twin.Labels?.[LABEL_MANAGED] === "true") await this.removeOne(wanted.name, twin.Id);
    }
    const missing = Object.entries(wanted.options ?? {}).filter(([key, value]) => chosen.Options?.[key] !== value);
    if (missing.length > 0) {
      // Options are fixed at creation, and containers are attached: re-creating
      // the network is the operator's call (see docs/docker.md).
      this.logger.warn({ network: wanted.name, options: Object.fromEntries(missing) }, "network lacks options it is now created with; keeping it");
    }
    return chosen.Id;
  }

  /** Removes every network under `name` that belongs to the owner. */
  async remove(name: string, owner: NetworkOwner): Promise<void> {
    for (const network of await this.checkOwned(name, owner)) await this.removeOne(name, network.Id);
  }

  private async create(wanted: WantedNetwork): Promise<void> {
    try {
      await this.docker.createNetwork({
        Name: wanted.name,
        Driver: "bridge",
        Internal: wanted.internal,
        ...(wanted.options ? { Options: { ...wanted.options } } : {}),
        CheckDuplicate: true,
        Labels: wanted.labels,
      });
      this.logger.info({ network: wanted.name, internal: wanted.internal }, "network created");
    } catch (error) {
      // Created meanwhile by another service process: the next look finds it.
      if (!isConflict(error)) throw toRuntimeError(error, `creating network ${wanted.name}`, this.engine);
    }
  }

  private async removeOne(name: string, id: string): Promise<void> {
    try {
      await this.docker.getNetwork(id).remove();
      this.logger.info({ network: name }, "network removed");
    } catch (error) {
      if (isNotFound(error)) return;
      // Still joined by a container (an app the deploy engine attached): it
      // stays until that container leaves rather than cutting the app off.
      if (statusCodeOf(error) === 403 || isConflict(error)) {
        this.logger.warn({ network: name, reason: engineMessage(error) }, "network still in use; left in place");
        return;
      }
      throw toRuntimeError(error, `removing network ${name}`, this.engine);
    }
  }
}
