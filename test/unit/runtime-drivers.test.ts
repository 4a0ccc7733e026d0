// Each driver stands on the Runtime port and runtime/shared/, never on the
// other driver: what both need lives in shared/, which needs neither.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const RUNTIME = join(import.meta.dirname, "../../src/runtime");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return /\.(ts|cjs)$/.test(entry.name) ? [path] : [];
  });
}

/** Files under runtime/ that `file` imports, as paths relative to runtime/. */
function runtimeImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specifiers = [...text.matchAll(/(?:from\s+|import\(\s*|require\(\s*)["'](\.{1,2}\/[^"']+)["']/g)].map((match) => match[1] ?? "");
  return specifiers.map((specifier) => relative(RUNTIME, resolve(dirname(file), specifier))).filter((path) => !path.startsWith(".."));
}

function offenders(from: string, forbidden: readonly string[]): string[] {
  return sourceFiles(join(RUNTIME, from)).flatMap((file) =>
    runtimeImports(file)
      .filter((target) => forbidden.some((dir) => target.startsWith(`${dir}/`)))
      .map((target) => `${relative(RUNTIME, file)} → ${target}`),
  );
}

describe("runtime drivers", () => {
  it("never import each other", () => {
    expect(offenders("process", ["docker"])).toEqual([]);
    expect(offenders("docker", ["process"])).toEqual([]);
  });

  it("share only what runtime/shared/ holds, which imports neither driver", () => {
    expect(offenders("shared", ["process", "docker"])).toEqual([]);
  });
});
