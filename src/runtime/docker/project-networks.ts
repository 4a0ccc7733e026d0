// A project's two networks: the private one only its PostgreSQL and PgBouncer
// share, and the app-facing one (the shared network, or its own in
// per-project mode).
import type { Logger } from "../../log.js";
import { KeyedLock } from "../keyed-lock.js";
import type { RuntimeTarget } from "../runtime.js";
import { projectLabels, sharedLabels, type ProjectNames } from "./docker-names.js";
import { DockerNetworks, type NetworkOwner } from "./docker-networks.js";
import type { DockerEngine } from "./docker-engine.js";
import { isPerProject, type DriverSettings } from "./driver-settings.js";
import type { NetworkIds } from "./pgbouncer-container.js";

/** The bridge driver's option (Docker 20.10+) that leaves the host without an IPv4 address on the bridge. */
const PRIVATE_NETWORK_OPTIONS = { "com.docker.network.bridge.inhibit_ipv4": "true" };

export class ProjectNetworks {
  private readonly networks: DockerNetworks;
  private readonly sharedLocks = new KeyedLock();

  constructor(
    private readonly engine: DockerEngine,
    private readonly settings: DriverSettings,
    logger: Logger,
  ) {
    this.networks = new DockerNetworks(engine.docker, logger, engine.endpoint);
  }

  /** Throws a conflict when a network under one of the project's names is not its own. */
  async checkOwned(target: RuntimeTarget, names: ProjectNames): Promise<void> {
    await Promise.all([
      this.networks.checkOwned(names.privateNetwork, privateOwner(target)),
      isPerProject(this.settings) ? this.networks.checkOwned(names.projectAppNetwork, appOwner(target)) : undefined,
    ]);
  }

  async ensure(target: RuntimeTarget, names: ProjectNames): Promise<NetworkIds> {
    const [app, privateId] = await Promise.all([
      this.ensureApp(target, names),
      // Internal: no route out of the host, and only the project's two
      // containers on it. Without an address of the host on its bridge, the
      // host is out of reach too: an internal network still gives containers
      // a default route to the host's bridge address, where every host
      // service listening on 0.0.0.0 answers.
      this.networks.ensure({
        name: names.privateNetwork,
        internal: true,
        options: PRIVATE_NETWORK_OPTIONS,
        labels: projectLabels(target, "private-network", this.engine.labels),
        owner: privateOwner(target),
      }),
    ]);
    return { app, private: privateId };
  }

  async remove(target: RuntimeTarget, names: ProjectNames): Promise<void> {
    await this.networks.remove(names.privateNetwork, privateOwner(target));
    if (isPerProject(this.settings)) await this.networks.remove(names.projectAppNetwork, appOwner(target));
  }

  private ensureApp(target: RuntimeTarget, names: ProjectNames): Promise<string> {
    if (isPerProject(this.settings)) {
      return this.networks.ensure({
        name: names.projectAppNetwork,
        internal: false,
        labels: projectLabels(target, "app-network", this.engine.labels),
        owner: appOwner(target),
      });
    }
    // The shared network usually belongs to the platform (the product spec's
    // traefik-public): used as it is; created, owned by no project, only when
    // missing. Projects ensuring in parallel create it once.
    const name = this.settings.appNetwork;
    return this.sharedLocks.run(name, () =>
      this.networks.ensure({ name, internal: false, labels: sharedLabels("app-network", this.engine.labels) }),
    );
  }
}

function privateOwner(target: RuntimeTarget): NetworkOwner {
  return { target, role: "private-network" };
}

function appOwner(target: RuntimeTarget): NetworkOwner {
  return { target, role: "app-network" };
}
