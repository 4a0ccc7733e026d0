// DatabaseService RPCs → the service's use-cases. Transport only: no logic
// beyond converting messages.
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { DatabaseService as DatabaseServiceDesc } from "../../gen/sota/database/v1/database_pb.js";
import type { DatabaseService } from "../service/database-service.js";
import { principalKey } from "./interceptors.js";
import { backupMessage, databaseMessage, limitsChange, usageMessage } from "./proto-convert.js";

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
        const [status, quota] = await Promise.all([service.limitsStatus(described.database), service.sizeQuota(described.database, size)]);
        return {
          database: databaseMessage(described.database, status, quota),
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
        return { backups: (await service.listBackups(req.projectId)).map(backupMessage) };
      },
      async restoreBackup(req, ctx) {
        const { restored, safety } = await service.restoreBackup(req.projectId, req.backupId, { byTenant: byTenant(ctx) });
        return { restored: backupMessage(restored), safetyBackup: backupMessage(safety) };
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
