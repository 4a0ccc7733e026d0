import { mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { authenticate, authorize, authorizeMetrics } from "../../src/server/authorization.js";
import { TokenRegistry, adminTokenEntry, hashToken, readTokensFile } from "../../src/server/tokens.js";

const dirs: string[] = [];
function dir(): string {
  const path = mkdtempSync(join(tmpdir(), "sota-tokens-"));
  dirs.push(path);
  return path;
}
afterEach(() => {
  for (const path of dirs.splice(0)) rmSync(path, { recursive: true, force: true });
});

const PROJECT = "550e8400-e29b-41d4-a716-446655440000";
const OTHER = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";

function codeOf(fn: () => unknown): Code | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

describe("tokens", () => {
  it("reads a tokens file of hashes and authenticates by hash", () => {
    const file = join(dir(), "tokens.json");
    writeFileSync(
      file,
      JSON.stringify([
        { name: "deploy-engine", sha256: hashToken("deployer-secret"), role: "deployer" },
        { name: "customer", sha256: hashToken("project-secret"), role: "project", projectId: PROJECT.toUpperCase() },
      ]),
    );
    const registry = new TokenRegistry(readTokensFile(file));
    expect(authenticate(registry, "Bearer deployer-secret")).toEqual({ name: "deploy-engine", role: "deployer" });
    expect(authenticate(registry, "bearer project-secret")).toEqual({ name: "customer", role: "project", projectId: PROJECT });
    expect(codeOf(() => authenticate(registry, undefined))).toBe(Code.Unauthenticated);
    expect(codeOf(() => authenticate(registry, "Basic abc"))).toBe(Code.Unauthenticated);
    expect(codeOf(() => authenticate(registry, "Bearer nope"))).toBe(Code.Unauthenticated);
  });

  it("explains a bad tokens file without printing a token", () => {
    const file = join(dir(), "tokens.json");
    writeFileSync(file, JSON.stringify([{ name: "x", sha256: "abc", role: "admin" }]));
    expect(() => readTokensFile(file)).toThrow(/entry #1: "sha256" must be 64 hex digits/);
    writeFileSync(file, JSON.stringify([{ name: "x", sha256: hashToken("t"), role: "project" }]));
    expect(() => readTokensFile(file)).toThrow(/needs "projectId"/);
    writeFileSync(file, "{not json");
    expect(() => readTokensFile(file)).toThrow(/not readable JSON/);
  });

  it("authorizes by role and project", () => {
    const project = { name: "customer", role: "project" as const, projectId: PROJECT };
    expect(codeOf(() => authorize(project, "Ensure", PROJECT))).toBeUndefined();
    expect(codeOf(() => authorize(project, "ListBackups", PROJECT))).toBeUndefined();
    expect(codeOf(() => authorize(project, "Ensure", OTHER))).toBe(Code.PermissionDenied);
    expect(codeOf(() => authorize(project, "GetConnection", PROJECT))).toBe(Code.PermissionDenied);
    expect(codeOf(() => authorize({ name: "d", role: "deployer" }, "GetConnection", OTHER))).toBeUndefined();
    expect(codeOf(() => authorize({ name: "a", role: "admin" }, "GetConnection", PROJECT))).toBeUndefined();
  });

  it("lets a metrics token read /metrics and call nothing, and keeps /metrics from project tokens", () => {
    const file = join(dir(), "tokens.json");
    writeFileSync(file, JSON.stringify([{ name: "prometheus", sha256: hashToken("scrape-secret"), role: "metrics" }]));
    const metrics = authenticate(new TokenRegistry(readTokensFile(file)), "Bearer scrape-secret");
    expect(metrics).toEqual({ name: "prometheus", role: "metrics" });
    expect(codeOf(() => authorizeMetrics(metrics))).toBeUndefined();
    expect(codeOf(() => authorizeMetrics({ name: "a", role: "admin" }))).toBeUndefined();
    expect(codeOf(() => authorizeMetrics({ name: "c", role: "project", projectId: PROJECT }))).toBe(Code.PermissionDenied);
    expect(codeOf(() => authorizeMetrics({ name: "d", role: "deployer" }))).toBe(Code.PermissionDenied);
    for (const method of ["Ensure", "GetDatabase", "ListBackups"]) expect(codeOf(() => authorize(metrics, method, PROJECT))).toBe(Code.PermissionDenied);
    expect(codeOf(() => authorize(metrics, "Ensure", ""))).toBe(Code.PermissionDenied);
  });

  it("generates the embedded admin token once, mode 0600", () => {
    const file = join(dir(), "admin.token");
    const first = adminTokenEntry(file);
    expect(first.created).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const token = readFileSync(file, "utf8").trim();
    expect(token.length).toBeGreaterThanOrEqual(40);
    const second = adminTokenEntry(file);
    expect(second.created).toBe(false);
    expect(second.entry.sha256).toBe(first.entry.sha256);
    expect(new TokenRegistry([second.entry]).lookup(token)?.role).toBe("admin");
  });
});
