// The generated Connect client, as a TypeScript caller of the API uses it,
// against a harness: HTTP/1.1, a bearer token on every call.
import { ConnectError, createClient, type Client, type Code } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import type { Harness } from "./app-harness.js";

/** The generated Connect client over HTTP/1.1 with a bearer token. */
export function connectClient(h: Harness, token: string): Client<typeof DatabaseService> {
  return createClient(
    DatabaseService,
    createConnectTransport({
      baseUrl: h.app.url,
      httpVersion: "1.1",
      interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${token}`), next(req))],
    }),
  );
}

/** The code a Connect call ends with: "ok", or its error's code. */
export async function connectCode(promise: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await promise;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}
