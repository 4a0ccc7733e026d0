// Connect is the server edge's business: the layers below it (service,
// backup, runtime, store, secrets) speak DomainError and never import the RPC
// library, so another edge (a CLI, a queue consumer) could drive them as they are.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = join(import.meta.dirname, "../../src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

describe("layers", () => {
  it("keeps @connectrpc out of everything below the server edge", () => {
    const below = ["service", "backup", "offsite", "runtime", "store", "secrets"].flatMap((dir) => sourceFiles(join(SRC, dir)));
    below.push(join(SRC, "errors.ts"));
    expect(below.length).toBeGreaterThan(20);
    const offenders = below.filter((file) => /from\s+["']@connectrpc\/|import\(\s*["']@connectrpc\//.test(readFileSync(file, "utf8")));
    expect(offenders.map((file) => relative(SRC, file))).toEqual([]);
  });

  it("keeps the store at the bottom: it imports no runtime, service, backup or server code", () => {
    const store = sourceFiles(join(SRC, "store"));
    const offenders = store.filter((file) => /from\s+["']\.\.\/(runtime|service|backup|server)\//.test(readFileSync(file, "utf8")));
    expect(offenders.map((file) => relative(SRC, file))).toEqual([]);
  });
});
