// DatabaseService RPCs → the service's use-cases. Transport only: no logic
// beyond converting messages.
import type { ConnectRouter } from "@connectrpc/connect";
import { DatabaseService as DatabaseServiceDesc } from "../../gen/sota/database/v1/database_pb.js";
import type { DatabaseService } from "../service/database-service.js";
import { backupMessage, databaseMessage } from "./proto-convert.js";

export function databaseRoutes(service: DatabaseService) {
  return (router: ConnectRouter): void => {
    router.service(DatabaseServiceDesc, {
      async ensure(req, ctx) {
        const { database, created } = await service.ensure(req.projectId, req.slug, ctx.signal);
        return { database: databaseMessage(database), created };
      },
      getDatabase(req) {
        return { database: databaseMessage(service.get(req.projectId)) };
      },
      getConnection(req) {
        const { url, database } = service.connection(req.projectId);
        return { databaseUrl: url, database: databaseMessage(database) };
      },
      async createBackup(req) {
        return { backup: backupMessage(await service.createBackup(req.projectId, req.wait)) };
      },
      listBackups(req) {
        return { backups: service.listBackups(req.projectId).map(backupMessage) };
      },
      async restoreBackup(req) {
        const { restored, safety } = await service.restoreBackup(req.projectId, req.backupId);
        return { restored: backupMessage(restored), safetyBackup: backupMessage(safety) };
      },
      async verifyBackup(req) {
        return { backup: backupMessage(await service.verifyBackup(req.projectId, req.backupId)) };
      },
    });
  };
}
