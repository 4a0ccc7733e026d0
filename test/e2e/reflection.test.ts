// gRPC server reflection, as the tools people already have use it: `buf curl`
// (the same protocol as grpcurl, grpcui and Postman) discovers and calls the
// API with no proto files, and a plain @grpc/grpc-js client speaks both
// reflection versions built from the vendored .proto files only.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";
import { poolerPortsSetting } from "../support/process-runtime-harness.js";

const run = promisify(execFile);
const PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));
const BUF = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
const VERSIONS = ["v1", "v1alpha"] as const;

let h: Harness;
let address: string;

beforeAll(async () => {
  h = await startHarness({ SOTA_POOLER_PORTS: poolerPortsSetting(42) });
  address = `127.0.0.1:${h.app.address.port}`;
});

afterAll(async () => {
  await h?.stop();
});

function bufCurl(...args: string[]): Promise<{ stdout: string }> {
  return run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], { timeout: 120_000 });
}

/** One bidi reflection stream: sends the requests, returns the answers in order. */
async function reflect(version: (typeof VERSIONS)[number], requests: object[]): Promise<any[]> {
  const definition = protoLoader.loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [PROTO_ROOT], keepCase: false, oneofs: true });
  const Service = (grpc.loadPackageDefinition(definition) as any).grpc.reflection[version].ServerReflection;
  const client = new Service(address, grpc.credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) => {
      const answers: any[] = [];
      const call = client.serverReflectionInfo();
      call.on("data", (answer: any) => answers.push(answer));
      call.on("error", reject);
      call.on("end", () => resolve(answers));
      for (const request of requests) call.write(request);
      call.end();
    });
  } finally {
    client.close();
  }
}

describe.each(VERSIONS)("grpc.reflection.%s, without a token", (version) => {
  it("lists the services", async () => {
    const [answer] = await reflect(version, [{ listServices: "" }]);
    const names = answer.listServicesResponse.service.map((s: { name: string }) => s.name);
    expect(names).toEqual(
      expect.arrayContaining(["sota.database.v1.DatabaseService", "grpc.health.v1.Health", `grpc.reflection.${version}.ServerReflection`]),
    );
  });

  it("returns the file containing DatabaseService, with its imports, and finds methods and messages", async () => {
    const answers = await reflect(version, [
      { fileContainingSymbol: "sota.database.v1.DatabaseService" },
      { fileContainingSymbol: "sota.database.v1.DatabaseService.Ensure" },
      { fileContainingSymbol: "sota.database.v1.EnsureRequest" },
    ]);
    for (const answer of answers) {
      const files = answer.fileDescriptorResponse.fileDescriptorProto.map((bytes: Buffer) => fromBinary(FileDescriptorProtoSchema, bytes));
      expect(files[0].name).toBe("sota/database/v1/database.proto");
      expect(files[0].service.map((s: { name: string }) => s.name)).toContain("DatabaseService");
      // Every import is in the same answer, so a client needs no second round trip.
      const names = new Set(files.map((f: { name: string }) => f.name));
      for (const dependency of files[0].dependency) expect(names).toContain(dependency);
    }
  });

  it("returns a file by name, as clients fetch imports", async () => {
    const [answer] = await reflect(version, [{ fileByFilename: "google/protobuf/timestamp.proto" }]);
    const file = fromBinary(FileDescriptorProtoSchema, answer.fileDescriptorResponse.fileDescriptorProto[0]);
    expect(file.messageType.map((m) => m.name)).toEqual(["Timestamp"]);
  });

  it("answers NOT_FOUND for what the server does not have, and keeps the stream open", async () => {
    const answers = await reflect(version, [{ fileContainingSymbol: "no.such.Service" }, { fileByFilename: "no/such.proto" }, { listServices: "" }]);
    expect(answers.map((a) => a.errorResponse?.errorCode)).toEqual([5, 5, undefined]);
    expect(answers[2].listServicesResponse.service.length).toBeGreaterThan(0);
  });
});

describe.each(["grpc-v1", "grpc-v1alpha"])("buf curl --reflect-protocol %s (no proto files)", (protocol) => {
  it("lists the services and the methods", async () => {
    const services = await bufCurl("--reflect-protocol", protocol, "--list-services", `http://${address}`);
    expect(services.stdout.split("\n")).toContain("sota.database.v1.DatabaseService");
    const methods = await bufCurl("--reflect-protocol", protocol, "--list-methods", `http://${address}`);
    expect(methods.stdout.split("\n")).toContain("sota.database.v1.DatabaseService/Ensure");
  });

  it("calls Ensure with the token as a header; reflection itself needs none", async () => {
    const projectId = randomUUID();
    const { stdout } = await bufCurl(
      "--reflect-protocol",
      protocol,
      "-H",
      `Authorization: Bearer ${h.tokens.admin}`,
      "-d",
      JSON.stringify({ projectId }),
      `http://${address}/sota.database.v1.DatabaseService/Ensure`,
    );
    expect(JSON.parse(stdout).database.projectId).toBe(projectId);
  });
});

it("still refuses DatabaseService calls without a token", async () => {
  const failed = await bufCurl("-d", JSON.stringify({ projectId: randomUUID() }), `http://${address}/sota.database.v1.DatabaseService/Ensure`).catch((e) => e);
  expect(failed.stderr).toMatch(/unauthenticated/i);
});
