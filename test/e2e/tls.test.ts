// With SOTA_TLS_CERT_FILE/SOTA_TLS_KEY_FILE the one port speaks TLS: gRPC over
// h2 and REST over HTTP/1.1, chosen by ALPN.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";

let h: Harness;
let certDir: string;
let ca: Buffer;

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), "sota-tls-"));
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    "-keyout", join(certDir, "key.pem"), "-out", join(certDir, "cert.pem"),
  ], { stdio: "ignore" });
  ca = readFileSync(join(certDir, "cert.pem"));
  h = await startHarness({ SOTA_TLS_CERT_FILE: join(certDir, "cert.pem"), SOTA_TLS_KEY_FILE: join(certDir, "key.pem") });
});

afterAll(async () => {
  await h?.stop();
  rmSync(certDir, { recursive: true, force: true });
});

describe("TLS", () => {
  it("serves REST over HTTPS/1.1", async () => {
    expect(h.app.url).toMatch(/^https:/);
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(`${h.app.url}/v1/projects/${randomUUID()}/database`, { ca, headers: { authorization: `Bearer ${h.tokens.admin}` } }, (res) => {
        let text = "";
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, body: text }));
      });
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(404);
    expect(JSON.parse(body)).toMatchObject({ code: "not_found" });
  });

  it("serves gRPC over h2 with TLS", async () => {
    const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [fileURLToPath(new URL("../../proto", import.meta.url))], enums: String });
    const { grpc: g } = grpc.loadPackageDefinition(def) as any;
    const client = new g.health.v1.Health(`localhost:${h.app.address.port}`, grpc.credentials.createSsl(ca));
    const response = await new Promise((resolve, reject) => client.check({ service: "" }, (error: Error | null, value: unknown) => (error ? reject(error) : resolve(value))));
    expect(response).toEqual({ status: "SERVING" });
    client.close();
  });

  it("a cleartext client gets no answer", async () => {
    await expect(fetch(`http://127.0.0.1:${h.app.address.port}/healthz`)).rejects.toThrow();
  });
});
