import { describe, expect, it } from "vitest";
import { pgbouncerOsUser } from "../../src/runtime/docker/pgbouncer-os-user.js";

describe("the OS user PgBouncer runs as in its container", () => {
  it("is SOTA_PGBOUNCER_USER when set, else the image's own USER unless root, else pgbouncer", () => {
    expect(pgbouncerOsUser("postgres", "1001")).toBe("postgres");
    expect(pgbouncerOsUser(undefined, "postgres")).toBe("postgres");
    expect(pgbouncerOsUser(undefined, "1001")).toBe("1001");
    expect(pgbouncerOsUser(undefined, "70:70")).toBe("70:70");
    for (const root of [undefined, "", "root", "0", "0:0", "root:root"]) expect(pgbouncerOsUser(undefined, root)).toBe("pgbouncer");
  });
});
