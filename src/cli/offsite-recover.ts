// `sota-db offsite recover`: disaster recovery up front. The project ids come
// from the bucket (SOTA_BACKUP_S3_*, as the service has them: listing needs
// the bucket's credentials, not the master key) or from the command line;
// each is brought back by an ordinary Ensure through the API, a few at a
// time, which the service answers from the bucket for a project it has no
// record of (see src/service/bucket-ensure.ts).
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { ConfigError, offsiteStorage } from "../config.js";
import { normalizeProjectId } from "../names.js";
import { hasManifest, projectsInBucket } from "../offsite/offsite-recovery.js";
import { S3ObjectStore } from "../offsite/object-store.js";
import type { DatabaseClient } from "./api.js";
import { UsageError } from "./usage-error.js";

export interface RecoverOutcome {
  readonly projectId: string;
  readonly slug: string;
  /** "recovered": the service had no record and made it (from the bucket); "already there": it had one. */
  readonly outcome: "recovered" | "already there" | "failed";
  readonly error: string;
}

/**
 * The projects to recover: those named, or with `all` every one whose
 * manifest the bucket holds. A named project the bucket does not hold is
 * refused here: the service would make it a new, empty database.
 */
export async function projectsToRecover(named: readonly string[], all: boolean, env: NodeJS.ProcessEnv): Promise<{ found: string[]; notInBucket: string[] }> {
  if (all && named.length > 0) throw new UsageError("name projects or pass --all, not both");
  if (!all && named.length === 0) throw new UsageError("name the projects to recover, or pass --all for every project the bucket holds");
  const wanted = named.map((raw) => {
    const id = normalizeProjectId(raw);
    if (!id) throw new UsageError(`${JSON.stringify(raw)} is not a project id (a UUID)`);
    return id;
  });
  let offsite;
  try {
    offsite = offsiteStorage(env).offsite;
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.message);
    throw error;
  }
  if (!offsite) throw new UsageError("offsite recover reads the bucket: set SOTA_BACKUP_S3_ENDPOINT, _BUCKET, _ACCESS_KEY_ID and _SECRET_ACCESS_KEY (and _PREFIX, _FORCE_PATH_STYLE) as the service has them");
  const objects = new S3ObjectStore(offsite);
  try {
    if (all) return { found: await projectsInBucket(objects, offsite.prefix), notInBucket: [] };
    const found: string[] = [];
    const notInBucket: string[] = [];
    for (const id of wanted) ((await hasManifest(objects, offsite.prefix, id)) ? found : notInBucket).push(id);
    return { found, notInBucket };
  } finally {
    objects.close();
  }
}

/** Ensure of each project, `concurrency` at a time; a failure is an outcome, not a stop. */
export async function recoverEach(client: DatabaseClient, projectIds: readonly string[], concurrency: number): Promise<RecoverOutcome[]> {
  const outcomes = new Map<string, RecoverOutcome>();
  const queue = [...projectIds];
  const worker = async (): Promise<void> => {
    for (let projectId = queue.shift(); projectId !== undefined; projectId = queue.shift()) {
      try {
        const response = await client.ensure({ projectId, slug: "" });
        outcomes.set(projectId, { projectId, slug: response.database?.slug ?? "", outcome: response.created ? "recovered" : "already there", error: "" });
      } catch (error) {
        const message = error instanceof ConnectError ? `${codeToString(error.code)}: ${error.rawMessage}` : error instanceof Error ? error.message : String(error);
        outcomes.set(projectId, { projectId, slug: "", outcome: "failed", error: message });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, projectIds.length) }, worker));
  return projectIds.map((projectId) => outcomes.get(projectId)!);
}

export function concurrencyArgument(raw: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 32) throw new UsageError("--concurrency must be a whole number from 1 to 32");
  return Number(raw);
}
