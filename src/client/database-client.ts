// The deploy engine's way in: a typed DatabaseService client over the
// official Connect transports, with the bearer token on every call. It imports
// only the generated contract, never the server, so another project can use it
// without pulling in the service.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";

export interface DatabaseClientOptions {
  /** Where sota-db listens, e.g. "http://127.0.0.1:8080" or "https://sota-db.internal:8443". */
  readonly baseUrl: string;
  /** A bearer token from the service's tokens file (admin or deployer for GetConnection). */
  readonly token: string;
  /**
   * "connect" (default): the Connect protocol over HTTP/1.1, which passes any
   * proxy or load balancer. "grpc": gRPC over HTTP/2, one multiplexed
   * connection, for callers that already speak gRPC end to end.
   */
  readonly transport?: "grpc" | "connect";
}

export type DatabaseClient = Client<typeof DatabaseService>;

export function createDatabaseClient(options: DatabaseClientOptions): DatabaseClient {
  if (!options.token) throw new Error("createDatabaseClient: token is required");
  const authorization = `Bearer ${options.token}`;
  // Set per request rather than as a default header, so the token lives only
  // in this closure and never in an options object a caller might log.
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", authorization);
    return next(req);
  };
  const common = { baseUrl: options.baseUrl, interceptors: [bearer] };
  const transport =
    (options.transport ?? "connect") === "grpc"
      ? createGrpcTransport(common)
      : createConnectTransport({ ...common, httpVersion: "1.1" });
  return createClient(DatabaseService, transport);
}
