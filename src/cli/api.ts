// How the CLI reaches the service: the generated Connect client over HTTP/1.1
// (works through any proxy, and TLS when the URL says https), with the bearer
// token on every call. Its own few lines rather than a shared client module,
// so the CLI depends on nothing but the generated code.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import { UsageError } from "./usage-error.js";

export interface ApiOptions {
  readonly url: string;
  readonly token?: string;
}

export type DatabaseClient = Client<typeof DatabaseService>;

/** The API base URL without a trailing slash, checked before anything is sent. */
export function baseUrl(api: ApiOptions): string {
  let parsed: URL;
  try {
    parsed = new URL(api.url);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(api.url)} is not a URL (e.g. http://127.0.0.1:8080)`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new UsageError("--url must start with http:// or https://");
  return parsed.href.replace(/\/+$/, "");
}

/** The token, or a usage error that says where to put one. */
export function bearerToken(api: ApiOptions): string {
  if (!api.token) throw new UsageError("no token: set SOTA_TOKEN (or pass --token)");
  return api.token;
}

export function databaseClient(api: ApiOptions): DatabaseClient {
  const authorization = `Bearer ${bearerToken(api)}`;
  const auth: Interceptor = (next) => (request) => {
    request.header.set("authorization", authorization);
    return next(request);
  };
  return createClient(DatabaseService, createConnectTransport({ baseUrl: baseUrl(api), httpVersion: "1.1", interceptors: [auth] }));
}
