// grpc.health.v1.Health: "" and the DatabaseService name report readiness;
// other names are unknown, as the health protocol specifies.
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import type { Readiness } from "./readiness.js";

const KNOWN = new Set(["", DatabaseService.typeName]);
const WATCH_INTERVAL_MS = 5_000;

export function healthRoutes(ready: Readiness) {
  const status = async (service: string): Promise<Status> => {
    if (!KNOWN.has(service)) return Status.SERVICE_UNKNOWN;
    return (await ready()).ready ? Status.SERVING : Status.NOT_SERVING;
  };
  return (router: ConnectRouter): void => {
    router.service(Health, {
      async check(req) {
        const current = await status(req.service);
        if (current === Status.SERVICE_UNKNOWN) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        return { status: current };
      },
      async *watch(req, ctx) {
        let last: Status | undefined;
        while (!ctx.signal.aborted) {
          const current = await status(req.service);
          if (current !== last) yield { status: current };
          last = current;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, WATCH_INTERVAL_MS);
            ctx.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
          });
        }
      },
    });
  };
}
