// The Docker driver's public face: the Runtime implementation and its options.
import { DockerRuntime, type DockerRuntimeOptions } from "./docker-runtime.js";

export {
  DEFAULT_APP_NETWORK,
  DEFAULT_PGBOUNCER_IMAGE,
  DEFAULT_POSTGRES_IMAGE,
  DEFAULT_READY_TIMEOUT_MS,
  DockerRuntime,
  PER_PROJECT_NETWORK,
  type DockerRuntimeOptions,
} from "./docker-runtime.js";
export { LABEL_MANAGED, LABEL_PROJECT_ID, LABEL_ROLE, LABEL_SLUG } from "./docker-names.js";

/**
 * A Docker runtime. Creating it does not contact the engine: an engine that is
 * down shows in ping() (readiness) and in each call, and the service keeps running.
 */
export function createDockerRuntime(options: DockerRuntimeOptions): DockerRuntime {
  return new DockerRuntime(options);
}
