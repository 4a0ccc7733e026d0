// Scratch databases on a project's server: where a backup is loaded before it
// replaces the live database (restore) or to prove it loads (verify).
//
// A scratch database is created to look like the live one from the outside:
// same owner (app_{slug}), encoding, locale, connection limit, privileges and
// per-database settings (ALTER DATABASE ... SET, which the app role, as owner,
// may have made). A plain pg_dump does not carry these database-level
// properties, so a restore that only replayed the dump would silently drop them.
//
// Names start with "sota_": slugs cannot contain "_", so a scratch database
// can never be mistaken for, or collide with, a project's database.
import { randomBytes } from "node:crypto";
import type { Runtime, RuntimeTarget } from "../runtime/runtime.js";
import { BackupError } from "./backup-errors.js";
import { quoteIdent, quoteLiteral } from "./sql-text.js";

export type ScratchPurpose = "restore" | "verify" | "old";

const SCRATCH_PATTERN = /^sota_(restore|verify|old)_[0-9a-f]{12}$/;
const DATABASE_PRIVILEGES = new Set(["CREATE", "TEMPORARY", "CONNECT"]);

export function scratchName(purpose: ScratchPurpose): string {
  return `sota_${purpose}_${randomBytes(6).toString("hex")}`;
}

export function isScratchName(name: string): boolean {
  return SCRATCH_PATTERN.test(name);
}

/** pg_database's row as JSON: the columns differ between PostgreSQL versions (locale providers came in 15, datlocale in 17). */
interface DatabaseRow {
  readonly encoding_name: string;
  readonly datcollate: string;
  readonly datctype: string;
  readonly datconnlimit: number;
  readonly datlocprovider?: string;
  readonly daticulocale?: string | null;
  readonly datlocale?: string | null;
  readonly daticurules?: string | null;
}

export async function createScratchLike(runtime: Runtime, target: RuntimeTarget, name: string): Promise<void> {
  const live = quoteLiteral(target.slug);
  const [row] = await runtime.adminQuery(
    target,
    `SELECT pg_get_userbyid(d.datdba) AS owner,
            (to_jsonb(d) || jsonb_build_object('encoding_name', pg_encoding_to_char(d.encoding)))::text AS props
       FROM pg_database d WHERE d.datname = ${live}`,
  );
  if (!row?.["owner"] || !row["props"]) throw new BackupError(`database "${target.slug}" does not exist on its server`);
  const props = JSON.parse(row["props"]) as DatabaseRow;
  await runtime.adminQuery(target, createStatement(name, row["owner"], props));
  try {
    await copyPrivilegesAndSettings(runtime, target, name);
  } catch (error) {
    await dropDatabase(runtime, target, name).catch(() => undefined);
    throw error;
  }
}

function createStatement(name: string, owner: string, props: DatabaseRow): string {
  // template0: template1 may hold objects an admin added, which the dump would then collide with.
  const parts = [`CREATE DATABASE ${quoteIdent(name)} WITH TEMPLATE template0 OWNER ${quoteIdent(owner)}`];
  parts.push(`ENCODING ${quoteLiteral(props.encoding_name)}`);
  parts.push(`LC_COLLATE ${quoteLiteral(props.datcollate)} LC_CTYPE ${quoteLiteral(props.datctype)}`);
  const provider = { c: "libc", i: "icu", b: "builtin" }[props.datlocprovider ?? ""];
  if (provider) parts.push(`LOCALE_PROVIDER ${provider}`);
  const providerLocale = props.datlocale ?? props.daticulocale;
  if (provider === "icu" && providerLocale) parts.push(`ICU_LOCALE ${quoteLiteral(providerLocale)}`);
  if (provider === "builtin" && providerLocale) parts.push(`BUILTIN_LOCALE ${quoteLiteral(providerLocale)}`);
  if (provider === "icu" && props.daticurules) parts.push(`ICU_RULES ${quoteLiteral(props.daticurules)}`);
  parts.push(`CONNECTION LIMIT ${Number.isInteger(props.datconnlimit) ? props.datconnlimit : -1}`);
  return parts.join(" ");
}

async function copyPrivilegesAndSettings(runtime: Runtime, target: RuntimeTarget, name: string): Promise<void> {
  const live = quoteLiteral(target.slug);
  const statements: string[] = [];
  const [acl] = await runtime.adminQuery(target, `SELECT (datacl IS NULL)::text AS is_default FROM pg_database WHERE datname = ${live}`);
  if (acl?.["is_default"] === "false") {
    // A NULL acl means PostgreSQL's defaults, which the new database has too;
    // an explicit one (e.g. CONNECT revoked from PUBLIC) is replayed grant by grant.
    statements.push(`REVOKE ALL ON DATABASE ${quoteIdent(name)} FROM PUBLIC`);
    const grants = await runtime.adminQuery(
      target,
      `SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee,
              a.privilege_type, a.is_grantable::text AS grantable
         FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = ${live}`,
    );
    for (const grant of grants) {
      const privilege = grant["privilege_type"] ?? "";
      if (!DATABASE_PRIVILEGES.has(privilege)) continue;
      const grantee = grant["grantee"] ? quoteIdent(grant["grantee"]) : "PUBLIC";
      const option = grant["grantable"] === "true" ? " WITH GRANT OPTION" : "";
      statements.push(`GRANT ${privilege} ON DATABASE ${quoteIdent(name)} TO ${grantee}${option}`);
    }
  }
  // Settings are copied row for row, as the server stores them: rebuilding
  // ALTER DATABASE ... SET statements from their text would need PostgreSQL's
  // own per-setting quoting rules (search_path lists, units) to be exact.
  statements.push(
    `INSERT INTO pg_db_role_setting (setdatabase, setrole, setconfig)
       SELECT n.oid, s.setrole, s.setconfig
         FROM pg_db_role_setting s
         JOIN pg_database o ON o.oid = s.setdatabase AND o.datname = ${live}
         JOIN pg_database n ON n.datname = ${quoteLiteral(name)}`,
  );
  // Explicitly one transaction, however the driver sends the string.
  await runtime.adminQuery(target, ["BEGIN", ...statements, "COMMIT"].join(";\n"));
}

export async function dropDatabase(runtime: Runtime, target: RuntimeTarget, name: string): Promise<void> {
  if (!isScratchName(name)) throw new Error("refusing to drop a database that is not a scratch database");
  await runtime.adminQuery(target, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
}

/**
 * Scratch databases a killed process left behind (a crash mid-restore or
 * mid-verify), except those in use right now.
 */
export async function dropLeftoverScratch(runtime: Runtime, target: RuntimeTarget, inUse: ReadonlySet<string>): Promise<string[]> {
  const rows = await runtime.adminQuery(target, `SELECT datname FROM pg_database WHERE datname LIKE 'sota\\_%'`);
  const leftovers = rows.map((row) => row["datname"] ?? "").filter((name) => isScratchName(name) && !inUse.has(name));
  for (const name of leftovers) await dropDatabase(runtime, target, name);
  return leftovers;
}
