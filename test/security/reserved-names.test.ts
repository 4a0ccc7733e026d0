// Reserved names (issue 9, item 2), through the real API.
//
// The attack: a tenant asking for the slug `postgres` got the maintenance
// database of its cluster as its own, and with it the place where the
// service's superuser sessions run (a planted function plus ALTER DATABASE
// ... SET search_path ran as the superuser on the next restart). And project
// X could take `p-<hex of Y's id>`, the slug Y gets by default, locking Y out
// (already_exists) for good. Each refusal must be INVALID_ARGUMENT and leave
// nothing behind: no store record, no database.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { slugForProject } from "../../src/names.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpc, grpcClients, type GrpcClients } from "../support/grpc-client.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

let h: Harness;
let rpc: GrpcClients;

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(21) });
  rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
}, 120_000);

afterAll(async () => {
  rpc?.close();
  await h?.stop();
});

async function ensureCode(projectId: string, slug: string): Promise<{ code: number; details: string }> {
  try {
    await rpc.database("ensure", { projectId, slug }, h.tokens.admin);
    return { code: grpc.status.OK, details: "" };
  } catch (error) {
    const failure = error as grpc.ServiceError;
    return { code: failure.code, details: failure.details };
  }
}

async function restStatus(projectId: string, slug: string): Promise<{ status: number; code: string }> {
  const response = await fetch(`${h.app.url}/v1/projects/${projectId}/database`, {
    method: "POST",
    headers: { authorization: `Bearer ${h.tokens.admin}`, "content-type": "application/json" },
    body: JSON.stringify({ slug }),
  });
  return { status: response.status, code: ((await response.json()) as { code: string }).code };
}

/** Nothing of `slug` exists: no record for the project or the slug, no instance (so no cluster, no database). */
async function assertNothingCreated(projectId: string, slug: string): Promise<void> {
  expect(await h.app.store.getDatabase(projectId)).toBeUndefined();
  expect((await h.app.store.listDatabases()).filter((record) => record.slug === slug)).toEqual([]);
  expect(existsSync(join(h.dataDir, "instances", slug))).toBe(false);
}

describe("reserved slugs", () => {
  for (const slug of ["postgres", "template0", "template1", "pgbouncer", "shop-seed", "template-abc"]) {
    it(`refuses "${slug}" with INVALID_ARGUMENT (gRPC and REST) and creates nothing`, async () => {
      const projectId = randomUUID();
      const refused = await ensureCode(projectId, slug);
      expect(refused.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(refused.details).toMatch(new RegExp(`slug "${slug}" is reserved`));
      expect(await restStatus(projectId, slug)).toEqual({ status: 400, code: "invalid_argument" });
      await assertNothingCreated(projectId, slug);
      // The runtime refuses the name as well, whoever asks.
      await expect(h.app.runtime.status({ projectId, slug })).rejects.toThrow(/invalid slug/);
    });
  }
});

describe("derived slugs", () => {
  it("project X cannot take the slug derived from project Y's id; Y still gets it", async () => {
    const x = randomUUID();
    const y = randomUUID();
    const ySlug = slugForProject(y);
    const refused = await ensureCode(x, ySlug);
    expect(refused.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(refused.details).toMatch(/default slug of another project/);
    expect(await restStatus(x, ySlug)).toEqual({ status: 400, code: "invalid_argument" });
    await assertNothingCreated(x, ySlug);
    expect((await h.app.runtime.status({ projectId: x, slug: ySlug })).state).toBe("missing");

    // Y, asking for no slug, gets its own derived slug: it was not locked out.
    const ensured = (await rpc.database("ensure", { projectId: y }, h.tokens.admin)) as { database: { slug: string } };
    expect(ensured.database.slug).toBe(ySlug);
    // And may name it explicitly too.
    expect((await ensureCode(y, ySlug)).code).toBe(grpc.status.OK);
  }, 120_000);
});
