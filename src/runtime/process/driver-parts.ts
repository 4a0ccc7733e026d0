// What the process driver's steps share: the host's programs and user, the
// running instances, the warm pool, the spare copies and the template, and the
// runtime's settings.
import type { PortRange, PortRegistry } from "../port-registry.js";
import type { InstanceHost, Instance } from "./instance/project-instance.js";
import type { PasswordDigests } from "./instance/password-digest.js";
import type { SpareCopies } from "./reserves/spare-copies.js";
import type { WarmPool } from "./reserves/warm-pool.js";

export interface DriverParts extends InstanceHost {
  /** Absolute root of instances/, templates/, warm/ and spares/. */
  readonly dataDir: string;
  readonly ports: PortRegistry;
  readonly portRange: PortRange;
  readonly readyTimeoutMs: number;
  /** By slug; only ever changed under that slug's lock. */
  readonly instances: Map<string, Instance>;
  readonly pool: WarmPool;
  readonly spares: SpareCopies;
  readonly digests: PasswordDigests;
  /** Aborted when the runtime closes: ends every ensure in flight. */
  readonly closing: AbortSignal;
  /** The template cluster's path, built on first use. */
  template(): Promise<string>;
}
