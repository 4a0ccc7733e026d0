import { describe, expect, it } from "vitest";
import { isBackupId, newBackupId, normalizeProjectId, slugForProject, slugProblem, slugProblemFor } from "../../src/names.js";
import { databaseUrl } from "../../src/service/database-url.js";

describe("names", () => {
  it("accepts the slugs of DESIGN.md", () => {
    for (const slug of ["my-app", "a", "a1", "app-2-x", "a".repeat(40)]) expect(slugProblem(slug)).toBeUndefined();
  });

  it("rejects bad slugs with a reason", () => {
    const cases: Record<string, RegExp> = {
      "": /empty/,
      "1app": /start with a lowercase letter/,
      "-app": /start with a lowercase letter/,
      "My-App": /start with a lowercase letter/,
      "my--app": /single '-'/,
      "my_app": /only lowercase letters/,
      "my app": /only lowercase letters/,
      "app-": /end with/,
      "a\"; DROP TABLE x; --": /only lowercase/,
      ["a".repeat(41)]: /at most 40/,
    };
    for (const [slug, reason] of Object.entries(cases)) expect(slugProblem(slug), slug).toMatch(reason);
  });

  it("refuses the names PostgreSQL, PgBouncer and the service use, saying why", () => {
    const cases: Record<string, RegExp> = {
      postgres: /reserved: it is PostgreSQL's maintenance database/,
      template0: /reserved: it is one of PostgreSQL's template databases/,
      template1: /reserved: it is one of PostgreSQL's template databases/,
      pgbouncer: /reserved: it is PgBouncer's admin console database/,
      "shop-seed": /reserved: slugs ending in '-seed'/,
      "template-x": /reserved: slugs starting with 'template-'/,
    };
    for (const [slug, reason] of Object.entries(cases)) expect(slugProblem(slug), slug).toMatch(reason);
    // Near misses stay valid.
    for (const slug of ["postgres2", "my-postgres", "templates", "seed", "seedling", "pgbouncer-app", "template"]) {
      expect(slugProblem(slug), slug).toBeUndefined();
    }
  });

  it("lets only the project whose id a derived slug encodes take it", () => {
    const mine = "550e8400-e29b-41d4-a716-446655440000";
    const other = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    expect(slugProblemFor(mine, slugForProject(mine))).toBeUndefined();
    expect(slugProblemFor(other, slugForProject(mine))).toMatch(/reserved: it is the default slug of another project/);
    // Any p- and 32 hex digits is some project's id, known here or not.
    expect(slugProblemFor(mine, `p-${"0".repeat(32)}`)).toMatch(/default slug of another project/);
    // Other p- slugs are ordinary slugs; the general rules still apply.
    expect(slugProblemFor(other, "p-shop")).toBeUndefined();
    expect(slugProblemFor(other, `p-${"a".repeat(31)}`)).toBeUndefined();
    expect(slugProblemFor(other, "postgres")).toMatch(/reserved/);
  });

  it("normalises UUID project ids and refuses anything else", () => {
    expect(normalizeProjectId("550E8400-E29B-41D4-A716-446655440000")).toBe("550e8400-e29b-41d4-a716-446655440000");
    for (const bad of ["", "550e8400", "550e8400-e29b-41d4-a716-44665544000g", "../etc/passwd", "550e8400e29b41d4a716446655440000"]) {
      expect(normalizeProjectId(bad)).toBeUndefined();
    }
  });

  it("derives a valid, unique slug from a project id", () => {
    const slug = slugForProject("550e8400-e29b-41d4-a716-446655440000");
    expect(slug).toBe("p-550e8400e29b41d4a716446655440000");
    expect(slugProblem(slug)).toBeUndefined();
  });

  it("makes sortable backup ids without path characters", () => {
    const first = newBackupId(new Date("2026-11-26T03:14:52.123Z"));
    const second = newBackupId(new Date("2026-11-26T03:14:52.124Z"));
    expect(first < second).toBe(true);
    expect(isBackupId(first)).toBe(true);
    expect(first).toMatch(/^[0-9a-z-]+$/);
    for (const bad of ["../x", "20261126t031452123z-abc", "x/y", ""]) expect(isBackupId(bad)).toBe(false);
  });

  it("builds the DATABASE_URL in the product spec's format", () => {
    expect(databaseUrl({ slug: "my-app", password: "a1b2", host: "sota-pgbouncer-my-app", port: 5432 })).toBe(
      "postgresql://app_my-app:a1b2@sota-pgbouncer-my-app:5432/my-app?sslmode=disable",
    );
  });
});
