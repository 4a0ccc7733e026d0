// backups list | create | restore | verify | download.
import type { Command } from "commander";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import { invocation, projectCommand, type Print } from "./command-kit.js";
import { downloadBackup } from "./download.js";
import { backupsTable, backupText } from "./render.js";
import { bytes, fields } from "./table.js";

const methods = DatabaseService.method;

function backupCommand(parent: Command, name: string, description: string): Command {
  return projectCommand(parent, name, description).argument("<backup-id>", "the backup's id (see backups list)");
}

export function addBackupCommands(program: Command, print: Print): void {
  const backups = program.command("backups").description("list, take, restore, verify and download backups");

  projectCommand(backups, "list", "the project's backups, newest first").action(async (projectId: string, _options: object, command: Command) => {
    const call = invocation(command, print);
    const response = await call.client().listBackups({ projectId });
    call.reply(methods.listBackups.output, response, () => backupsTable(response.backups));
  });

  projectCommand(backups, "create", "take a backup now")
    .option("--wait", "return once the backup has finished (otherwise at once, with the running backup)")
    .action(async (projectId: string, options: { wait?: boolean }, command: Command) => {
      const call = invocation(command, print);
      const response = await call.client().createBackup({ projectId, wait: Boolean(options.wait) });
      call.reply(methods.createBackup.output, response, () => backupText(response.backup));
    });

  backupCommand(backups, "restore", "restore the database to a backup (a safety backup of the current state is taken first)").action(
    async (projectId: string, backupId: string, _options: object, command: Command) => {
      const call = invocation(command, print);
      const response = await call.client().restoreBackup({ projectId, backupId });
      call.reply(methods.restoreBackup.output, response, () =>
        ["restored:", backupText(response.restored), "", "safety backup (the state before the restore):", backupText(response.safetyBackup)].join("\n"),
      );
    },
  );

  backupCommand(backups, "verify", "load a backup into a scratch database to prove it restores").action(
    async (projectId: string, backupId: string, _options: object, command: Command) => {
      const call = invocation(command, print);
      const response = await call.client().verifyBackup({ projectId, backupId });
      call.reply(methods.verifyBackup.output, response, () => backupText(response.backup));
    },
  );

  backupCommand(backups, "download", "download a backup's .sql.gz and check its sha256 (progress on stderr when it is a terminal)")
    .option("-o, --output <file>", "where to write it (default: the server's file name, in the current directory)")
    .action(async (projectId: string, backupId: string, options: { output?: string }, command: Command) => {
      const { global } = invocation(command, print);
      const result = await downloadBackup(global, projectId, backupId, options.output, process.stderr);
      print(global.json ? JSON.stringify(result, null, 2) : fields([["file", result.file], ["size", bytes(result.sizeBytes)], ["sha256", `${result.sha256} (checked)`]]));
    });
}
