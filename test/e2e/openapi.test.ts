// The OpenAPI document against the running service: it is served as kept in
// the repository, it is valid OpenAPI 3.1, every documented operation answers
// as documented (status and body schema) over real HTTP against real
// PostgreSQL + PgBouncer, and every route the server has is documented.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_VERSION, DOCUMENTED } from "../../src/server/openapi/openapi-document.js";
import { DOWNLOAD_PATH } from "../../src/server/backup-download-route.js";
import { PLAIN_ROUTES } from "../../src/server/http-server.js";
import { REST_ROUTES } from "../../src/server/rest-gateway.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";
import { windowOf } from "../support/pitr-api.js";
import { randomUUID } from "node:crypto";

const repoDocument = JSON.parse(readFileSync(new URL("../../openapi/openapi.json", import.meta.url), "utf8"));

type Operation = { responses: Record<string, { $ref?: string; content?: Record<string, { schema: unknown }> }>; security: unknown[] };
const operations = Object.entries(repoDocument.paths as Record<string, Record<string, Operation>>).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, op]) => ({ path, method: method.toUpperCase(), op: op as Operation & { operationId: string } })),
);

/** A documented path with sample values in its parameters. */
function sample(path: string, values: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => values[name] ?? `no-${name}`);
}

const SAMPLE_IDS = { projectId: "0b9c2d4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e", backupId: "20260101t120000000z-0123456789ab" };

describe("every route is documented", () => {
  const documented = (method: string, pathname: string): boolean =>
    DOCUMENTED.some((op) => op.method === method && sample(op.path, SAMPLE_IDS) === pathname);
  const matching = (method: string, test: (pathname: string) => boolean): boolean =>
    DOCUMENTED.some((op) => op.method === method && test(sample(op.path, SAMPLE_IDS)));

  it("each REST gateway route has a documented operation with its method", () => {
    for (const route of REST_ROUTES) expect(matching(route.method, (p) => route.pattern.test(p)), `${route.method} ${route.pattern} (${route.rpc})`).toBe(true);
  });

  it("the backup download, the probes, /metrics and /openapi.json are documented", () => {
    expect(matching("GET", (p) => DOWNLOAD_PATH.test(p))).toBe(true);
    expect(matching("HEAD", (p) => DOWNLOAD_PATH.test(p))).toBe(true);
    for (const path of PLAIN_ROUTES) expect(documented("GET", path), path).toBe(true);
  });

  it("each documented operation is a route the server has", () => {
    for (const op of DOCUMENTED) {
      const pathname = sample(op.path, SAMPLE_IDS);
      const known =
        REST_ROUTES.some((route) => route.method === op.method && route.pattern.test(pathname)) ||
        ((op.method === "GET" || op.method === "HEAD") && DOWNLOAD_PATH.test(pathname)) ||
        (op.method === "GET" && (PLAIN_ROUTES as readonly string[]).includes(pathname));
      expect(known, `${op.method} ${op.path}`).toBe(true);
    }
  });

  it("the repository's document is the one the code builds, with package.json's version", async () => {
    const { openApiDocument } = await import("../../src/server/openapi/openapi-document.js");
    expect(repoDocument, "openapi/openapi.json is stale: run npm run openapi").toEqual(openApiDocument());
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    expect(API_VERSION).toBe(pkg.version);
  });
});

describe("the document against the running service", () => {
  let h: Harness;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addSchema(repoDocument, "openapi.json");

  beforeAll(async () => {
    h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(93), SOTA_BACKUP_MIN_FREE: "0" });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it("/openapi.json needs no token, equals the repository's file and is valid OpenAPI 3.1", async () => {
    const response = await fetch(`${h.app.url}/openapi.json`);
    expect(response.status).toBe(200);
    const served = await response.json();
    expect(served).toEqual(repoDocument);
    const validator = new Validator();
    const result = await validator.validate(served);
    expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  /** The JSON pointer of a place in the document, as a URI fragment ajv resolves. */
  const pointer = (...segments: string[]): string =>
    `openapi.json#/${segments.map((s) => encodeURIComponent(s.replace(/~/g, "~0").replace(/\//g, "~1"))).join("/")}`;

  /** Checks the response's status is documented for the operation and its body matches the documented schema. */
  async function conforms(path: string, method: string, op: Operation, response: Response): Promise<void> {
    const status = String(response.status);
    let documented = op.responses[status];
    expect(documented, `status ${status} is not documented for ${method} ${path}: ${await response.clone().text()}`).toBeDefined();
    let where = ["paths", path, method.toLowerCase(), "responses", status];
    if (documented!.$ref) {
      const name = documented!.$ref.split("/").pop()!;
      documented = repoDocument.components.responses[name];
      where = ["components", "responses", name];
    }
    // HTTP strips a HEAD answer's body: only the status can be checked.
    if (method === "HEAD") return;
    const type = (response.headers.get("content-type") ?? "").split(";")[0]!.trim();
    expect(documented!.content?.[type], `content type ${type} is not documented for ${method} ${path} ${status}`).toBeDefined();
    if (type !== "application/json") {
      await response.arrayBuffer();
      return;
    }
    const body = await response.json();
    const check = ajv.getSchema(pointer(...where, "content", type, "schema"))!;
    expect(check(body), `${method} ${path} ${status}: ${JSON.stringify(check.errors)} in ${JSON.stringify(body)}`).toBe(true);
  }

  it("the body check bites: a field the document lacks, or a missing one, fails it", () => {
    const check = ajv.getSchema("openapi.json#/components/schemas/EnsureResponse")!;
    expect(check({ created: true })).toBe(true);
    expect(check({ created: true, password: "x" })).toBe(false);
    expect(check({})).toBe(false);
  });

  it("every documented operation answers as documented, called in a lifecycle order", async () => {
    const projectId = h.projectId;
    const ids: Record<string, string> = { projectId };
    const admin = h.tokens.admin;
    // How each documented operation is called; an operation without a plan fails the test.
    const cloneTarget = randomUUID();
    const plans: Record<string, { query?: string; body?: unknown; token?: string; status?: number; ids?: Record<string, string>; before?: () => Promise<unknown> }> = {
      Ensure: { body: { slug: "openapi-walk" } },
      GetDatabase: {},
      UpdateDatabase: { body: { limits: { sizeQuotaMb: "1024" } } },
      CreateBackup: { query: "?wait=true" },
      ListBackups: {},
      VerifyBackup: {},
      DownloadBackup: {},
      DownloadBackupHead: {},
      RestoreBackup: {},
      // Into another project, once the walk's database has a recovery window to clone from.
      CloneDatabase: { ids: { projectId: cloneTarget }, body: { sourceProjectId: projectId }, before: () => windowOf(h, projectId) },
      RotateCredentials: { body: {} },
      Healthz: { token: "" },
      Readyz: { token: "" },
      Metrics: {},
      OpenApi: { token: "" },
      DeleteDatabase: { query: "?skip_final_backup=true" },
    };
    const order = Object.keys(plans);
    const walk = [...operations].sort((a, b) => order.indexOf(a.op.operationId) - order.indexOf(b.op.operationId));
    expect(walk.map((o) => o.op.operationId).sort()).toEqual([...order].sort());
    for (const { path, method, op } of walk) {
      const plan = plans[op.operationId]!;
      const token = plan.token ?? admin;
      await plan.before?.();
      const response = await fetch(`${h.app.url}${sample(path, { ...ids, ...plan.ids })}${plan.query ?? ""}`, {
        method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(plan.body ? { "content-type": "application/json" } : {}) },
        ...(plan.body ? { body: JSON.stringify(plan.body) } : {}),
      });
      expect(response.status, `${method} ${path}: ${await response.clone().text()}`).toBe(plan.status ?? 200);
      if (op.operationId === "CreateBackup") ids.backupId = (await response.clone().json()).backup.id;
      await conforms(path, method, op, response);
    }
  });

  it("errors are documented: no token, a project token on a platform call, an unknown project, a bad body", async () => {
    const find = (id: string) => operations.find((o) => o.op.operationId === id)!;
    const other = h.otherProjectId;
    const call = async (id: string, init: RequestInit, ids: Record<string, string>, expected: number) => {
      const { path, method, op } = find(id);
      const response = await fetch(`${h.app.url}${sample(path, { ...SAMPLE_IDS, ...ids })}`, { method, ...init });
      expect(response.status, `${id}: ${await response.clone().text()}`).toBe(expected);
      await conforms(path, method, op, response);
    };
    for (const { op } of operations.filter((o) => o.op.security.length > 0)) {
      await call(op.operationId, {}, { projectId: other }, 401);
    }
    await call("DeleteDatabase", { headers: { authorization: `Bearer ${h.tokens.project}` } }, { projectId: h.projectId }, 403);
    await call("GetDatabase", { headers: { authorization: `Bearer ${h.tokens.admin}` } }, { projectId: other }, 404);
    await call("Ensure", { headers: { authorization: `Bearer ${h.tokens.admin}` }, body: "not json" }, { projectId: other }, 400);
    await call("Ensure", { headers: { authorization: `Bearer ${h.tokens.admin}` }, body: "x".repeat(70 * 1024) }, { projectId: other }, 413);
    await call("Metrics", { headers: { authorization: `Bearer ${h.tokens.project}` } }, {}, 403);
  });
});
