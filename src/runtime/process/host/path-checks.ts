// Yes/no questions about paths, where "cannot tell" (permissions, races) means no.
import { access, constants, stat } from "node:fs/promises";
import { delimiter, join } from "node:path";

export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `name` on PATH, then in `fallbackDirs`; undefined when there is none. */
export async function findProgram(name: string, fallbackDirs: readonly string[] = ["/usr/sbin", "/sbin"]): Promise<string | undefined> {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter).filter(Boolean), ...fallbackDirs];
  for (const dir of dirs) {
    if (await isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}
