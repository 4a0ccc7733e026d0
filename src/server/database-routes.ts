// DatabaseService RPCs → the service's use-cases. Transport only: no logic
// beyond converting messages.
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DatabaseService as DatabaseServiceDesc } from "../../gen/sota/database/v1/database_pb.js";
import type { DatabaseService } from "../service/database-service.js";
import { principalKey } from "./interceptors.js";
import { backupMessage, databaseMessage, limitsChange, recoveryWindowMessage, timeOf, usageMessage } from "./proto-convert.js";

export function databaseRoutes(service: DatabaseService) {
  return (router: ConnectRouter): void => {
    router.service(DatabaseServiceDesc, {
      async ensure(req, ctx) {
        // A project token may not choose its own limits: only the operator's tokens may.
        if (req.limits && byTenant(ctx)) {
          throw new ConnectError("a project token may not set limits: a project's limits are set by the operator", Code.PermissionDenied);
        }
        const { database, created } = await service.ensure(req.projectId, req.slug, ctx.signal, limitsChange(req.limits));
        return { database: databaseMessage(database), created };
      },
      async getDatabase(req) {
        const described = await service.describe(req.projectId);
        const size = "figures" in described ? described.figures.sizeBytes : undefined;
        const [status, quota, window] = await Promise.all([
          service.limitsStatus(described.database),
          service.sizeQuota(described.database, size),
          service.recoveryWindow(described.database),
        ]);
        return {
          database: databaseMessage(described.database, status, quota),
          ...recoveryWindowMessage(window),
          ...("figures" in described ? { usage: usageMessage(described.figures) } : { usageUnavailable: described.unavailable }),
        };
      },
      async updateDatabase(req) {
        const database = await service.updateLimits(req.projectId, limitsChange(req.limits));
        return { database: databaseMessage(database, await service.limitsStatus(database)) };
      },
      async getConnection(req) {
        const { url, sessionUrl, database } = await service.connection(req.projectId);
        return { databaseUrl: url, sessionUrl, database: databaseMessage(database) };
      },
      async createBackup(req, ctx) {
        return { backup: backupMessage(await service.createBackup(req.projectId, req.wait, { byTenant: byTenant(ctx) })) };
      },
      async listBackups(req) {
        const backups = await service.listBackups(req.projectId);
        const window = await service.recoveryWindow(await service.get(req.projectId));
        return { backups: backups.map(backupMessage), ...recoveryWindowMessage(window) };
      },
      async restoreBackup(req, ctx) {
        const targetTime = timeOf(req.targetTime, "target_time");
        const outcome = await service.restoreBackup(req.projectId, req.backupId, { byTenant: byTenant(ctx), ...(targetTime ? { targetTime } : {}) });
        return {
          restored: backupMessage(outcome.restored),
          ...(outcome.safety ? { safetyBackup: backupMessage(outcome.safety) } : {}),
          ...(outcome.targetTime ? { targetTime: timestampFromDate(outcome.targetTime) } : {}),
        };
      },
      async cloneDatabase(req, ctx) {
        const targetTime = timeOf(req.targetTime, "target_time");
        const database = await service.clone(req.projectId, req.sourceProjectId, { ...(targetTime ? { targetTime } : {}), slug: req.slug }, ctx.signal);
        return { database: databaseMessage(database) };
      },
      async verifyBackup(req) {
        return { backup: backupMessage(await service.verifyBackup(req.projectId, req.backupId)) };
      },
      async deleteDatabase(req) {
        const { database, finalBackup } = await service.delete(req.projectId, { skipFinalBackup: req.skipFinalBackup });
        return { database: databaseMessage(database), ...(finalBackup ? { finalBackup: backupMessage(finalBackup) } : {}) };
      },
      async rotateCredentials(req) {
        const { url, database } = await service.rotate(req.projectId, { graceSeconds: req.graceSeconds });
        return { databaseUrl: url, database: databaseMessage(database) };
      },
    });
  };
}

/**
 * A project token's manual backups and restores count against its project's
 * limit. Admin and deployer tokens are trusted (the operator, the deploy
 * engine): a tenant that spent its budget must not block the deploy engine's
 * pre-deploy backup. The free-space reserve still holds for them.
 */
function byTenant(ctx: HandlerContext): boolean {
  // Anything but a trusted role counts, so a caller the interceptor did not name is limited too.
  const role = ctx.values.get(principalKey)?.role;
  return role !== "admin" && role !== "deployer";
}
