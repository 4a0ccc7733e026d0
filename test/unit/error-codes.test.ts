// The server edge's mapping of the domain's error kinds: each kind reaches
// callers as the Connect code of the same name, with the HTTP status the
// README documents (Connect's own mapping: a Connect upgrade that changed one
// would change the product's REST answers, and fails here first).
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { DomainError, ERROR_KINDS, kindOf, type ErrorKind } from "../../src/errors.js";
import { RuntimeError } from "../../src/runtime/runtime.js";
import { codeName, errorJson, httpStatus, publicError } from "../../src/server/error-codes.js";
import { SealError } from "../../src/secrets/sealer.js";
import { SlugTakenError } from "../../src/store/store.js";

/** As the README's error paragraph lists them. */
const README_STATUS: Record<ErrorKind, number> = {
  invalid_argument: 400,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 400,
  out_of_range: 400,
  resource_exhausted: 429,
  unavailable: 503,
  deadline_exceeded: 504,
  data_loss: 500,
  internal: 500,
  unimplemented: 501,
};

describe("error codes at the server edge", () => {
  it("gives every kind the Connect code of its name and the README's HTTP status", () => {
    for (const kind of ERROR_KINDS) {
      const error = publicError(new DomainError(kind, `a ${kind} failure`));
      expect(error).toBeInstanceOf(ConnectError);
      expect(codeName(error!.code)).toBe(kind);
      expect(httpStatus(error!.code)).toBe(README_STATUS[kind]);
      expect(error!.rawMessage).toBe(`a ${kind} failure`);
    }
    // The codes only the edge raises.
    expect(httpStatus(Code.Unauthenticated)).toBe(401);
    expect(httpStatus(Code.PermissionDenied)).toBe(403);
  });

  it("sends a retry hint as Retry-After, and nothing else of the error", () => {
    const error = publicError(new DomainError("resource_exhausted", "try again in 30 s", { retryAfterSeconds: 30, cause: new Error("secret detail") }));
    expect(error!.metadata.get("retry-after")).toBe("30");
    expect(JSON.parse(errorJson(error!))).toEqual({ code: "resource_exhausted", message: "try again in 30 s" });
    expect(publicError(new DomainError("not_found", "gone"))!.metadata.get("retry-after")).toBeNull();
  });

  it("shows nothing of an error that is not a domain error", () => {
    expect(publicError(new Error("connect to /var/lib/sota password=hunter2"))).toBeUndefined();
    expect(publicError("a string")).toBeUndefined();
    expect(kindOf(new Error("x"))).toBe("internal");
  });

  it("keeps the kinds the layers below have always meant", () => {
    expect(new RuntimeError("unavailable", "x").kind).toBe("unavailable");
    expect(new RuntimeError("timeout", "x").kind).toBe("deadline_exceeded");
    expect(new RuntimeError("conflict", "x").kind).toBe("failed_precondition");
    expect(new RuntimeError("failed", "x").kind).toBe("internal");
    expect(new SlugTakenError("taken").kind).toBe("already_exists");
    expect(new SealError("tampered").kind).toBe("data_loss");
    expect(new RuntimeError("timeout", "x")).toBeInstanceOf(DomainError);
  });
});
