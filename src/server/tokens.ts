// Bearer tokens, kept only as sha256 hashes. A token has a role:
// admin (everything), deployer (may read connection strings), project
// (bound to one project: ensure, describe and back up that project only), or
// metrics (may read /metrics and nothing else: for Prometheus).
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { normalizeProjectId } from "../names.js";

export type Role = "admin" | "deployer" | "project" | "metrics";

export interface Principal {
  readonly name: string;
  readonly role: Role;
  /** Set for project tokens only. */
  readonly projectId?: string;
}

export interface TokenEntry extends Principal {
  /** Hex sha256 of the token. */
  readonly sha256: string;
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export class TokenRegistry {
  private readonly byHash: ReadonlyMap<string, Principal>;

  constructor(entries: readonly TokenEntry[]) {
    this.byHash = new Map(entries.map(({ sha256, ...principal }) => [sha256, principal]));
  }

  /** The token's principal, or undefined for an unknown token. */
  lookup(token: string): Principal | undefined {
    return this.byHash.get(hashToken(token));
  }

  get size(): number {
    return this.byHash.size;
  }
}

/** Parses SOTA_TOKENS_FILE; every problem names the entry, never a token. */
export function readTokensFile(path: string): TokenEntry[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`SOTA_TOKENS_FILE ${path}: not readable JSON (${(error as Error).message})`);
  }
  if (!Array.isArray(parsed)) throw new Error(`SOTA_TOKENS_FILE ${path}: must be a JSON array of {name, sha256, role, projectId?}`);
  return parsed.map((item: unknown, index) => tokenEntry(item, `SOTA_TOKENS_FILE ${path}: entry #${index + 1}`));
}

function tokenEntry(item: unknown, where: string): TokenEntry {
  if (typeof item !== "object" || item === null) throw new Error(`${where}: must be an object`);
  const { name, sha256, role, projectId } = item as Record<string, unknown>;
  if (typeof name !== "string" || name.length === 0) throw new Error(`${where}: "name" must be a non-empty string`);
  if (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/i.test(sha256)) throw new Error(`${where}: "sha256" must be 64 hex digits`);
  if (role !== "admin" && role !== "deployer" && role !== "project" && role !== "metrics") {
    throw new Error(`${where}: "role" must be admin, deployer, project or metrics`);
  }
  if (role === "project") {
    const id = typeof projectId === "string" ? normalizeProjectId(projectId) : undefined;
    if (!id) throw new Error(`${where}: a project token needs "projectId" (a UUID)`);
    return { name, sha256: sha256.toLowerCase(), role, projectId: id };
  }
  return { name, sha256: sha256.toLowerCase(), role };
}

/**
 * The embedded default: with no tokens file, an admin token lives in
 * {dataDir}/admin.token (0600), created on first start.
 */
export function adminTokenEntry(path: string): { entry: TokenEntry; created: boolean } {
  let created = false;
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `sota_${randomBytes(32).toString("base64url")}\n`, { mode: 0o600, flag: "wx" });
    created = true;
  }
  const token = readFileSync(path, "utf8").trim();
  if (token.length < 16) throw new Error(`${path}: the admin token file is empty or too short; delete it to get a new one`);
  return { entry: { name: "admin (generated)", role: "admin", sha256: hashToken(token) }, created };
}
