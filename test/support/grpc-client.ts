// A real @grpc/grpc-js client, the deploy engine's kind, built from the .proto
// files at run time (no generated code shared with the server).
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";

const PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));

const definition = protoLoader.loadSync(["sota/database/v1/database.proto", "grpc/health/v1/health.proto"], {
  includeDirs: [PROTO_ROOT],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
});
const loaded = grpc.loadPackageDefinition(definition) as any;

export type GrpcCall = (method: string, request: object, token?: string) => Promise<any>;

export interface GrpcClients {
  database: GrpcCall;
  health: GrpcCall;
  /** The raw health client, for the streaming Watch call. */
  healthClient: any;
  close(): void;
}

export function grpcClients(address: string): GrpcClients {
  const database = new loaded.sota.database.v1.DatabaseService(address, grpc.credentials.createInsecure());
  const health = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
  const call =
    (client: any): GrpcCall =>
    (method, request, token) =>
      new Promise((resolve, reject) => {
        const metadata = new grpc.Metadata();
        if (token) metadata.set("authorization", `Bearer ${token}`);
        client[method](request, metadata, { deadline: Date.now() + 120_000 }, (error: grpc.ServiceError | null, response: unknown) =>
          error ? reject(error) : resolve(response),
        );
      });
  return {
    database: call(database),
    health: call(health),
    healthClient: health,
    close() {
      database.close();
      health.close();
    },
  };
}

/** The status a call ends with: OK, or its error's code. */
export async function grpcCode(promise: Promise<unknown>): Promise<number> {
  try {
    await promise;
    return grpc.status.OK;
  } catch (error) {
    return (error as grpc.ServiceError).code;
  }
}

export { grpc };
