// DatabaseService RPCs → the service's use-cases. Transport only: no logic
// beyond converting messages.
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { DatabaseService as DatabaseServiceDesc } from "../../gen/sota/database/v1/database_pb.js";
import type { DatabaseService } from "../service/database-service.js";
import { principalKey } from "./interceptors.js";
import { backupMessage, databaseMessage, limitsChange } from "./proto-convert.js";

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
        const database = await service.get(req.projectId);
        const [status, quota] = await Promise.all([service.limitsStatus(database), service.sizeQuota(database)]);
        return { database: databaseMessage(database, status, quota) };
      },
      async updateDatabase(req) {
        const database = await service.updateLimits(req.projectId, limitsChange(req.limits));
        return { database: databaseMessage(database, await service.limitsStatus(database)) };
      },
      async getConnection(req) {
        const { url, database } = await service.connection(req.projectId);
        return { databaseUrl: url, database: databaseMessage(database) };
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
