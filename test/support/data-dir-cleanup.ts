// Removing a data dir the service or a runtime used, and the OS users its
// instances were given: as root, each instance, spare and warm copy has one,
// recorded in its directory, and a test or a benchmark must not leave users
// behind on the machine.
import { execFile } from "node:child_process";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Processes of the data dir must have stopped (the runtime or service closed). */
export async function removeDataDir(dir: string): Promise<void> {
  for (const record of await userRecords(dir)) {
    const name = (await readFile(record, "utf8").catch(() => "")).trim();
    if (!/^sota-[0-9a-f]{10}$/.test(name)) continue;
    await run("userdel", [name]).catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
}

/** The os-user records a few levels down: instances/x, warm/x, spares/x, floor, and a data dir nested one deeper. */
async function userRecords(dir: string, depth = 3): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const found: string[] = [];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isFile() && entry.name === "os-user") found.push(path);
    else if (entry.isDirectory() && depth > 0 && entry.name !== "pgdata") found.push(...(await userRecords(path, depth - 1)));
  }
  return found;
}

