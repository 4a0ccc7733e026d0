// An RPC's body is read only for a caller whose bearer token is known. The
// check runs when Connect first pulls the body: a ConnectError thrown there is
// answered by Connect itself in the caller's protocol (Connect 401, gRPC and
// gRPC-Web status 16), before a byte of the body is read. Authorization, which
// needs the project id from the message, stays in the interceptor.
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";
import { authenticate } from "./authorization.js";
import type { TokenRegistry } from "./tokens.js";

export function tokenBeforeBody(request: UniversalServerRequest, tokens: TokenRegistry, onRefused: () => Promise<void>): UniversalServerRequest {
  const body = request.body;
  if (typeof body !== "object" || body === null || !(Symbol.asyncIterator in body)) return request;
  const authorization = request.header.get("authorization");
  return {
    ...request,
    body: {
      async *[Symbol.asyncIterator]() {
        try {
          authenticate(tokens, authorization);
        } catch (error) {
          await onRefused();
          throw error;
        }
        yield* body as AsyncIterable<Uint8Array>;
      },
    },
  };
}
