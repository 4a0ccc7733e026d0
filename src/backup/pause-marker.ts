// A restore killed between PAUSE and RESUME would leave the app's clients
// waiting at PgBouncer until the pooler restarts, and a pooler container
// outlives the service. So the restore notes the pause on disk first, and the
// next start resumes every database such a note names.
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loggableError, type Logger } from "../log.js";
import type { Runtime, RuntimeTarget } from "../runtime/runtime.js";
import { normalizeProjectId, slugProblem } from "../names.js";
import { projectBackupDir } from "./backup-paths.js";
import { poolerDatabases } from "./pooler-pause.js";
import { quoteIdent } from "./sql-text.js";

const MARKER = "pooler-paused.json";

/** Written and flushed before PAUSE is sent. */
export async function notePaused(backupDir: string, target: RuntimeTarget): Promise<string> {
  const dir = projectBackupDir(backupDir, target.slug);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, MARKER);
  await writeFile(path, JSON.stringify({ projectId: target.projectId, slug: target.slug }), { mode: 0o600, flush: true });
  return path;
}

export async function clearPaused(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** At start: RESUME every database a killed restore left paused. */
export async function resumeInterruptedRestores(backupDir: string, runtime: Runtime, logger: Logger): Promise<void> {
  let slugs: string[];
  try {
    slugs = await readdir(backupDir);
  } catch {
    return;
  }
  for (const slug of slugs) {
    const path = join(backupDir, slug, MARKER);
    let target: RuntimeTarget;
    try {
      const noted = JSON.parse(await readFile(path, "utf8")) as { projectId?: unknown; slug?: unknown };
      const projectId = typeof noted.projectId === "string" ? normalizeProjectId(noted.projectId) : undefined;
      if (!projectId || noted.slug !== slug || slugProblem(slug) !== undefined) continue;
      target = { projectId, slug };
    } catch {
      continue;
    }
    try {
      for (const name of poolerDatabases(slug)) {
        await runtime.poolerCommand(target, `RESUME ${quoteIdent(name)}`).catch((error: unknown) => {
          if (!/not paused/i.test((error as Error)?.message ?? "")) throw error;
        });
      }
      await clearPaused(path);
      logger.warn({ projectId: target.projectId, slug }, "resumed a database left paused by an interrupted restore");
    } catch (error) {
      logger.error({ projectId: target.projectId, slug, err: loggableError(error) }, "could not resume a database left paused by an interrupted restore");
    }
  }
}
