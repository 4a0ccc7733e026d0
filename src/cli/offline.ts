// Offline helpers: a new bearer token with its tokens-file line, and a new
// master key. Nothing here talks to the service.
import { randomBytes } from "node:crypto";
import { normalizeProjectId } from "../names.js";
import { hashToken, type Role, type TokenEntry } from "../server/tokens.js";
import { UsageError } from "./usage-error.js";

export const ROLES: readonly Role[] = ["admin", "deployer", "project", "metrics"];

export interface NewToken {
  readonly token: string;
  readonly entry: TokenEntry;
}

/** A token shaped like the generated admin token: "sota_" and 32 random bytes, base64url. */
export function newToken(role: Role, name: string | undefined, projectId: string | undefined): NewToken {
  const token = `sota_${randomBytes(32).toString("base64url")}`;
  const entryName = name?.trim() || role;
  if (role === "project") {
    const id = projectId === undefined ? undefined : normalizeProjectId(projectId);
    if (!id) throw new UsageError("a project token needs --project <project-id> (a UUID)");
    return { token, entry: { name: entryName, sha256: hashToken(token), role, projectId: id } };
  }
  if (projectId !== undefined) throw new UsageError(`--project is only for --role project (a ${role} token is not bound to a project)`);
  return { token, entry: { name: entryName, sha256: hashToken(token), role } };
}

/** A SOTA_MASTER_KEY value: base64 of 32 random bytes. */
export function newMasterKey(): string {
  return randomBytes(32).toString("base64");
}
