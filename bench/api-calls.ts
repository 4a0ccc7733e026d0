// The deploy engine's calls over gRPC, as the benchmark makes them.
import { randomUUID } from "node:crypto";
import { firstAppQuery } from "./direct-runtime.js";
import type { ServiceProcess } from "./service-process.js";

export async function ensure(service: ServiceProcess, projectId: string): Promise<void> {
  await service.database("ensure", { projectId }, service.token);
}

export async function databaseUrl(service: ServiceProcess, projectId: string): Promise<string> {
  const response = (await service.database("getConnection", { projectId }, service.token)) as { databaseUrl: string };
  return response.databaseUrl;
}

/** A deploy of a new project: Ensure, GetConnection, then the app's first query through PgBouncer. Returns the project id. */
export async function newDatabaseThroughApi(service: ServiceProcess): Promise<string> {
  const projectId = randomUUID();
  await ensure(service, projectId);
  await firstAppQuery(await databaseUrl(service, projectId));
  return projectId;
}
