// End to end through every transport the deploy engine and customers use:
// a real @grpc/grpc-js client, Connect (JSON and gRPC-Web) and plain HTTP,
// against real PostgreSQL + PgBouncer started by the process runtime.
import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DatabaseService, DatabaseState } from "../../gen/sota/database/v1/database_pb.js";
import { startHarness, type Harness } from "../support/app-harness.js";
import { grpc, grpcClients, type GrpcClients } from "../support/grpc-client.js";
import { queryUrl } from "../support/url-query.js";

let h: Harness;
let rpc: GrpcClients;
const secrets: string[] = [];

beforeAll(async () => {
  h = await startHarness();
  rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
  secrets.push(...Object.values(h.tokens));
});

afterAll(async () => {
  rpc?.close();
  await h?.stop();
});

function rest(path: string, init: { method?: string; token?: string; body?: string; headers?: Record<string, string> } = {}) {
  return fetch(`${h.app.url}${path}`, {
    method: init.method ?? "GET",
    headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
}

function connectClient(token: string, kind: "connect" | "grpc-web" = "connect") {
  const options = {
    baseUrl: h.app.url,
    httpVersion: "1.1" as const,
    interceptors: [(next: any) => (req: any) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
  };
  const transport = kind === "connect" ? createConnectTransport(options) : createGrpcWebTransport(options);
  return createClient(DatabaseService, transport);
}

async function grpcCode(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
    return grpc.status.OK;
  } catch (error) {
    return (error as grpc.ServiceError).code;
  }
}


describe("the product spec's curl calls (REST)", () => {
  it("POST /v1/projects/{id}/database with no body provisions a working database", async () => {
    const response = await rest(`/v1/projects/${h.projectId}/database`, { method: "POST", token: h.tokens.project });
    expect(response.status).toBe(200);
    const body = (await response.json()) as any;
    expect(body.created).toBe(true);
    expect(body.database).toMatchObject({
      projectId: h.projectId,
      slug: `p-${h.projectId.replace(/-/g, "")}`,
      state: "DATABASE_STATE_READY",
      runtime: "process",
      host: "127.0.0.1",
      user: `app_p-${h.projectId.replace(/-/g, "")}`,
      pooler: { poolMode: "transaction", defaultPoolSize: 20, maxClientConn: 100 },
    });
    expect(body.database.postgresVersion).toMatch(/^\d+/);
    expect(JSON.stringify(body)).not.toMatch(/postgresql:\/\/|password/i);

    const again = (await (await rest(`/v1/projects/${h.projectId}/database`, { method: "POST", token: h.tokens.project })).json()) as any;
    expect(again.created).toBe(false);
    expect(again.database.port).toBe(body.database.port);

    const got = await rest(`/v1/projects/${h.projectId}/database`, { token: h.tokens.project });
    expect(got.status).toBe(200);
    expect(((await got.json()) as any).database.slug).toBe(body.database.slug);
  });
});

describe("the deploy engine's calls (gRPC)", () => {
  const projectId = randomUUID();
  let url = "";

  it("Ensure then GetConnection gives a DATABASE_URL that works through PgBouncer", async () => {
    const ensured = await rpc.database("ensure", { projectId, slug: "my-app" }, h.tokens.deployer);
    expect(ensured.created).toBe(true);
    expect(ensured.database).toMatchObject({ slug: "my-app", state: "DATABASE_STATE_READY", databaseName: "my-app", user: "app_my-app" });
    const connection = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    url = connection.databaseUrl;
    expect(url).toMatch(/^postgresql:\/\/app_my-app:[0-9a-f]{32}@127\.0\.0\.1:\d+\/my-app\?sslmode=disable$/);
    expect(Number(new URL(url).port)).toBe(ensured.database.port);
    secrets.push(url, new URL(url).password);

    await queryUrl(url, "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)");
    await queryUrl(url, "INSERT INTO notes (body) VALUES ($1), ($2)", ["hello", "world"]);
    const rows = await queryUrl(url, "SELECT current_user, current_database(), count(*)::int AS n FROM notes");
    expect(rows.rows[0]).toEqual({ current_user: "app_my-app", current_database: "my-app", n: 2 });

    // The session URL: the same pooler and credentials, the session pool's database.
    const session = connection.sessionUrl;
    expect(session).toBe(url.replace("/my-app?", "/my-app_session?"));
    secrets.push(session);
    const viaSession = await queryUrl(session, "SELECT current_user, current_database(), count(*)::int AS n FROM notes");
    expect(viaSession.rows[0]).toEqual({ current_user: "app_my-app", current_database: "my-app", n: 2 });
  });

  it("a second Ensure returns the same database and never changes the password", async () => {
    const again = await rpc.database("ensure", { projectId, slug: "my-app" }, h.tokens.deployer);
    expect(again.created).toBe(false);
    const connection = await rpc.database("getConnection", { projectId }, h.tokens.deployer);
    expect(connection.databaseUrl).toBe(url);
    expect((await queryUrl(url, "SELECT count(*)::int AS n FROM notes")).rows[0].n).toBe(2);
  });

  it("the app role is an owner, not a superuser, and a wrong password is refused", async () => {
    const role = await queryUrl(url, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user");
    expect(role.rows[0]).toEqual({ rolsuper: false, rolcreatedb: false, rolcreaterole: false });
    const owner = await queryUrl(url, "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()");
    expect(owner.rows[0].owner).toBe("app_my-app");
    const wrong = new URL(url);
    wrong.password = "0".repeat(32);
    await expect(queryUrl(wrong.toString(), "SELECT 1")).rejects.toThrow();
  });

  it("the pool settings are in effect in PgBouncer itself", async () => {
    const rows = await h.app.runtime.poolerCommand({ projectId, slug: "my-app" }, "SHOW CONFIG");
    const config = Object.fromEntries(rows.map((row) => [row.key, row.value]));
    expect(config.pool_mode).toBe("transaction");
    expect(config.default_pool_size).toBe("20");
    expect(config.max_client_conn).toBe("100");
    expect(config.auth_type).toBe("scram-sha-256");
    expect(config.server_reset_query).toBe("DISCARD ALL");
    expect(config.server_reset_query_always).toBe("1");
    const database = (await rpc.database("getDatabase", { projectId }, h.tokens.deployer)).database;
    if (database.pooler.preparedStatementsSupported) {
      expect(Number(config.max_prepared_statements)).toBeGreaterThan(0);
      expect(database.pooler.maxPreparedStatements).toBe(Number(config.max_prepared_statements));
    } else {
      expect(config.max_prepared_statements).toBeUndefined();
      expect(database.pooler.maxPreparedStatements).toBe(0);
    }
  });

  it("concurrent Ensure calls for one project make one database with one password", async () => {
    const id = randomUUID();
    const results = await Promise.all(Array.from({ length: 5 }, () => rpc.database("ensure", { projectId: id, slug: "twin" }, h.tokens.deployer)));
    expect(results.filter((result) => result.created)).toHaveLength(1);
    expect(new Set(results.map((result) => result.database.port)).size).toBe(1);
    const urls = await Promise.all(Array.from({ length: 3 }, () => rpc.database("getConnection", { projectId: id }, h.tokens.deployer)));
    expect(new Set(urls.map((result) => result.databaseUrl)).size).toBe(1);
    secrets.push(urls[0].databaseUrl, new URL(urls[0].databaseUrl).password);
    expect((await h.app.store.listDatabases()).filter((record) => record.slug === "twin")).toHaveLength(1);
  });

  it("grpc.health.v1 reports SERVING", async () => {
    expect(await rpc.health("check", { service: "" })).toEqual({ status: "SERVING" });
    expect(await rpc.health("check", { service: "sota.database.v1.DatabaseService" })).toEqual({ status: "SERVING" });
    expect(await grpcCode(rpc.health("check", { service: "nope" }))).toBe(grpc.status.NOT_FOUND);
  });
});

describe("Connect clients", () => {
  it("Connect JSON and gRPC-Web reach the same handlers", async () => {
    for (const kind of ["connect", "grpc-web"] as const) {
      const client = connectClient(h.tokens.project, kind);
      const { database } = await client.getDatabase({ projectId: h.projectId });
      expect(database?.state).toBe(DatabaseState.READY);
      await expect(client.getConnection({ projectId: h.projectId })).rejects.toMatchObject({ code: Code.PermissionDenied });
    }
  });
});

describe("auth", () => {
  it("rejects missing and unknown tokens on every transport", async () => {
    expect(await grpcCode(rpc.database("getDatabase", { projectId: h.projectId }))).toBe(grpc.status.UNAUTHENTICATED);
    expect(await grpcCode(rpc.database("getDatabase", { projectId: h.projectId }, "not-a-token"))).toBe(grpc.status.UNAUTHENTICATED);
    const none = await rest(`/v1/projects/${h.projectId}/database`, { method: "POST" });
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ code: "unauthenticated" });
    expect((await rest(`/v1/projects/${h.projectId}/database`, { token: "nope" })).status).toBe(401);
    await expect(connectClient("nope").getDatabase({ projectId: h.projectId })).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it("keeps a project token to its own project, and away from secrets", async () => {
    const before = (await h.app.store.listDatabases()).length;
    const other = await rest(`/v1/projects/${h.otherProjectId}/database`, { method: "POST", token: h.tokens.project });
    expect(other.status).toBe(403);
    expect(await other.json()).toMatchObject({ code: "permission_denied" });
    expect(await h.app.store.listDatabases()).toHaveLength(before);
    expect(await grpcCode(rpc.database("getConnection", { projectId: h.projectId }, h.tokens.project))).toBe(grpc.status.PERMISSION_DENIED);
    expect(await grpcCode(rpc.database("ensure", { projectId: h.projectId }, h.tokens.other))).toBe(grpc.status.PERMISSION_DENIED);
  });
});

describe("bad input changes nothing", () => {
  it("answers each with the right code", async () => {
    const before = (await h.app.store.listDatabases()).map((record) => record.projectId).sort();
    const fresh = randomUUID();
    const cases: [Promise<Response>, number, string][] = [
      [rest(`/v1/projects/not-a-uuid/database`, { method: "POST", token: h.tokens.admin }), 400, "invalid_argument"],
      [rest(`/v1/projects/${fresh}/database`, { method: "POST", token: h.tokens.admin, body: '{"slug":"Bad_Slug"}' }), 400, "invalid_argument"],
      [rest(`/v1/projects/${fresh}/database`, { method: "POST", token: h.tokens.admin, body: '{"slug":"a--b"}' }), 400, "invalid_argument"],
      [rest(`/v1/projects/${fresh}/database`, { method: "POST", token: h.tokens.admin, body: '{"slug":"my-app"}' }), 409, "already_exists"],
      [rest(`/v1/projects/${fresh}/database`, { method: "POST", token: h.tokens.admin, body: "{not json" }), 400, "invalid_argument"],
      [rest(`/v1/projects/${fresh}/database`, { method: "POST", token: h.tokens.admin, body: "[1,2]" }), 400, "invalid_argument"],
      [rest(`/v1/projects/${fresh}/database`, { method: "POST", token: h.tokens.admin, body: JSON.stringify({ slug: "x".repeat(200_000) }) }), 413, "resource_exhausted"],
      [rest(`/v1/projects/${fresh}/database`, { token: h.tokens.admin }), 404, "not_found"],
      [rest(`/v1/projects/${fresh}/database/nope`, { token: h.tokens.admin }), 404, "not_found"],
      [rest(`/v1/projects/${fresh}/database`, { method: "PUT", token: h.tokens.admin }), 405, "unimplemented"],
      [rest(`/v1/projects/${fresh}/database`, { method: "DELETE", token: h.tokens.admin }), 404, "not_found"],
      [rest(`/v1/projects/${fresh}/database/credentials/rotate`, { method: "POST", token: h.tokens.admin }), 404, "not_found"],
      [rest(`/nope`), 404, "not_found"],
    ];
    for (const [promise, status, code] of cases) {
      const response = await promise;
      expect(response.status, `${status} ${code}`).toBe(status);
      const body = (await response.json()) as { code: string; message: string };
      expect(body.code).toBe(code);
      expect(body.message.length).toBeGreaterThan(0);
    }
    expect(await grpcCode(rpc.database("ensure", { projectId: "x" }, h.tokens.admin))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await grpcCode(rpc.database("ensure", { projectId: fresh, slug: "-x" }, h.tokens.admin))).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await grpcCode(rpc.database("getConnection", { projectId: fresh }, h.tokens.admin))).toBe(grpc.status.NOT_FOUND);
    expect((await h.app.store.listDatabases()).map((record) => record.projectId).sort()).toEqual(before);
  });

  it("refuses to change a database's slug", async () => {
    const code = await grpcCode(rpc.database("ensure", { projectId: h.projectId, slug: "renamed" }, h.tokens.admin));
    expect(code).toBe(grpc.status.FAILED_PRECONDITION);
    expect((await h.app.store.getDatabase(h.projectId))?.slug).toBe(`p-${h.projectId.replace(/-/g, "")}`);
  });
});

describe("operations", () => {
  it("serves /healthz, /readyz and Prometheus /metrics (admin token) without secrets", async () => {
    expect((await rest("/healthz")).status).toBe(200);
    const ready = await rest("/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ready", checks: { store: { ok: true }, runtime: { ok: true } } });
    expect((await rest("/metrics")).status).toBe(401);
    const metrics = await (await rest("/metrics", { token: h.tokens.admin })).text();
    expect(metrics).toMatch(/sota_rpc_requests_total\{method="Ensure",code="ok"\} \d+/);
    expect(metrics).toMatch(/sota_rpc_requests_total\{method="GetConnection",code="permission_denied"\} \d+/);
    expect(metrics).toMatch(/sota_databases\{state="ready"\} [1-9]/);
    expect(metrics).toMatch(/sota_ensure_duration_seconds_bucket/);
    for (const secret of secrets) expect(metrics).not.toContain(secret);
  });

  it("brings every database back after a restart, with the same URL and data", async () => {
    const id = randomUUID();
    await rpc.database("ensure", { projectId: id, slug: "survivor" }, h.tokens.deployer);
    const url = (await rpc.database("getConnection", { projectId: id }, h.tokens.deployer)).databaseUrl;
    secrets.push(url, new URL(url).password);
    await queryUrl(url, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");
    rpc.close();
    await h.restart();
    rpc = grpcClients(`127.0.0.1:${h.app.address.port}`);
    // No Ensure needed: start-up resumed every known database.
    expect((await queryUrl(url, "SELECT v FROM kept")).rows).toEqual([{ v: 42 }]);
    expect((await rpc.database("getConnection", { projectId: id }, h.tokens.deployer)).databaseUrl).toBe(url);
  });

  it("never writes a password, a token or a DATABASE_URL to the log", () => {
    const log = h.logs.join("");
    expect(h.logs.length).toBeGreaterThan(10);
    expect(log).toContain("database ready");
    expect(secrets.length).toBeGreaterThan(6);
    for (const secret of secrets) expect(log).not.toContain(secret);
    expect(log).not.toMatch(/postgresql:\/\/[^"\s]*:[^"\s]*@/);
  });
});

describe("errors", () => {
  it("reports a tampered sealed DATABASE_URL as data loss, and keeps serving", async () => {
    const id = randomUUID();
    await rpc.database("ensure", { projectId: id, slug: "tampered" }, h.tokens.deployer);
    const record = (await h.app.store.getDatabase(id))!;
    const [version, keyId, body] = record.sealedUrl!.split(".") as [string, string, string];
    const bytes = Buffer.from(body, "base64url");
    bytes[bytes.length - 20]! ^= 0xff;
    await h.app.store.updateDatabase(id, { sealedUrl: `${version}.${keyId}.${bytes.toString("base64url")}` });
    const error = await rpc.database("getConnection", { projectId: id }, h.tokens.deployer).catch((e: grpc.ServiceError) => e);
    expect(error.code).toBe(grpc.status.DATA_LOSS);
    expect(error.details).toMatch(/cannot be opened/);
    // Another project's record, sealed under its own id, is not affected.
    const other = (await h.app.store.getDatabase(h.projectId))!;
    await h.app.store.updateDatabase(id, { sealedUrl: other.sealedUrl });
    expect((await rpc.database("getConnection", { projectId: id }, h.tokens.deployer).catch((e: grpc.ServiceError) => e)).code).toBe(grpc.status.DATA_LOSS);
    expect((await rpc.database("getConnection", { projectId: h.projectId }, h.tokens.deployer)).databaseUrl).toMatch(/^postgresql:/);
  });

  it("grpc.health.v1 Watch streams the serving status", async () => {
    const client = rpc.healthClient;
    const first = await new Promise<any>((resolve, reject) => {
      const stream = client.watch({ service: "" });
      stream.once("data", (message: unknown) => {
        stream.cancel();
        resolve(message);
      });
      stream.once("error", (error: grpc.ServiceError) => (error.code === grpc.status.CANCELLED ? undefined : reject(error)));
    });
    expect(first).toEqual({ status: "SERVING" });
  });

  it("Connect errors carry the code, never internal detail", async () => {
    const client = connectClient(h.tokens.admin);
    const error = await client.getConnection({ projectId: randomUUID() }).catch((e: unknown) => ConnectError.from(e));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.NotFound);
  });
});
