// The RPC interceptors, outermost first: metrics see the final code, errors
// are made safe before they leave, and auth runs before any handler.
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { loggableError, type Logger } from "../log.js";
import type { Metrics } from "../metrics.js";
import { authenticate, authorize, isPublicService } from "./authorization.js";
import { codeName, publicError } from "./error-codes.js";
import type { Principal, TokenRegistry } from "./tokens.js";

/** The authenticated caller, for handlers that need it. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "authenticated principal" });

export function metricsInterceptor(metrics: Metrics): Interceptor {
  return (next) => async (req) => {
    const method = req.method.name;
    const started = performance.now();
    try {
      const res = await next(req);
      metrics.observeRequest(method, "ok", started);
      return res;
    } catch (error) {
      metrics.observeRequest(method, codeName(ConnectError.from(error).code), started);
      throw error;
    }
  };
}

/**
 * The one place where the handlers' DomainErrors become Connect codes.
 * Anything that is neither one nor a ConnectError is an internal failure: the
 * caller gets "internal error" with no detail (it could hold a path, a query
 * or worse); the log gets the detail.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (error) {
      const shown = publicError(error);
      if (shown) throw shown;
      logger.error({ method: req.method.name, err: loggableError(error) }, "unexpected error");
      throw new ConnectError("internal error", Code.Internal);
    }
  };
}

export function authInterceptor(tokens: TokenRegistry): Interceptor {
  return (next) => async (req) => {
    if (isPublicService(req.service.typeName)) return next(req);
    const principal = authenticate(tokens, req.header.get("authorization"));
    if (req.stream) throw new ConnectError("streaming calls are not offered", Code.Unimplemented);
    const projectId = (req.message as { projectId?: unknown }).projectId;
    authorize(principal, req.method.name, typeof projectId === "string" ? projectId : "");
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}
