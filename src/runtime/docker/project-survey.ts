// What a previous run left of a project: its two containers, each checked to
// be this project's, so a foreign one stops the work before anything changes.
import type Docker from "dockerode";
import { RuntimeError, type RuntimeTarget } from "../runtime.js";
import type { DockerEngine } from "./docker-engine.js";
import { ownershipProblem, type ProjectNames } from "./docker-names.js";

export interface Survey {
  readonly postgres: Docker.ContainerInspectInfo | undefined;
  readonly pgbouncer: Docker.ContainerInspectInfo | undefined;
}

export async function surveyContainers(engine: DockerEngine, target: RuntimeTarget, names: ProjectNames): Promise<Survey> {
  const [postgres, pgbouncer] = await Promise.all([
    engine.inspectContainer(names.postgres),
    engine.inspectContainer(names.pgbouncer),
  ]);
  for (const [info, role] of [
    [postgres, "postgres"],
    [pgbouncer, "pgbouncer"],
  ] as const) {
    if (!info) continue;
    const problem = ownershipProblem("container", info.Name.replace(/^\//, ""), info.Config.Labels, target, role);
    if (problem) throw new RuntimeError("conflict", problem);
  }
  return { postgres, pgbouncer };
}
