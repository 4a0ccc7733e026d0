// backups list | create | restore | verify | download.
import type { Command } from "commander";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import { databaseClient } from "./api.js";
import type { GlobalOptions, Print } from "./database-commands.js";
import { downloadBackup } from "./download.js";
import { backupsTable, backupText, json } from "./render.js";
import { bytes, fields } from "./table.js";

const methods = DatabaseService.method;

export function addBackupCommands(program: Command, print: Print): void {
  const backups = program.command("backups").description("list, take, restore, verify and download backups");

  backups
    .command("list")
    .description("the project's backups, newest first")
    .argument("<project-id>", "the project's UUID")
    .action(async (projectId: string, _options: object, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const response = await databaseClient(global).listBackups({ projectId });
      print(global.json ? json(methods.listBackups.output, response) : backupsTable(response.backups));
    });

  backups
    .command("create")
    .description("take a backup now")
    .argument("<project-id>", "the project's UUID")
    .option("--wait", "return once the backup has finished (otherwise at once, with the running backup)")
    .action(async (projectId: string, options: { wait?: boolean }, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const response = await databaseClient(global).createBackup({ projectId, wait: Boolean(options.wait) });
      print(global.json ? json(methods.createBackup.output, response) : backupText(response.backup));
    });

  backups
    .command("restore")
    .description("restore the database to a backup (a safety backup of the current state is taken first)")
    .argument("<project-id>", "the project's UUID")
    .argument("<backup-id>", "the backup's id (see backups list)")
    .action(async (projectId: string, backupId: string, _options: object, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const response = await databaseClient(global).restoreBackup({ projectId, backupId });
      if (global.json) return print(json(methods.restoreBackup.output, response));
      print(["restored:", backupText(response.restored), "", "safety backup (the state before the restore):", backupText(response.safetyBackup)].join("\n"));
    });

  backups
    .command("verify")
    .description("load a backup into a scratch database to prove it restores")
    .argument("<project-id>", "the project's UUID")
    .argument("<backup-id>", "the backup's id (see backups list)")
    .action(async (projectId: string, backupId: string, _options: object, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const response = await databaseClient(global).verifyBackup({ projectId, backupId });
      print(global.json ? json(methods.verifyBackup.output, response) : backupText(response.backup));
    });

  backups
    .command("download")
    .description("download a backup's .sql.gz and check its sha256 (progress on stderr when it is a terminal)")
    .argument("<project-id>", "the project's UUID")
    .argument("<backup-id>", "the backup's id (see backups list)")
    .option("-o, --output <file>", "where to write it (default: the server's file name, in the current directory)")
    .action(async (projectId: string, backupId: string, options: { output?: string }, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const result = await downloadBackup(global, projectId, backupId, options.output, process.stderr);
      print(global.json ? JSON.stringify(result, null, 2) : fields([["file", result.file], ["size", bytes(result.sizeBytes)], ["sha256", `${result.sha256} (checked)`]]));
    });
}
