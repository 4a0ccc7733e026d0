// backups list | create | restore | verify | download.
import type { Command } from "commander";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import { invocation, projectCommand, type Print } from "./command-kit.js";
import { downloadBackup } from "./download.js";
import { backupsTable, backupText, time } from "./render.js";
import { bytes, fields } from "./table.js";
import { timeArgument } from "./time-argument.js";
import { UsageError } from "./usage-error.js";

const methods = DatabaseService.method;

function backupCommand(parent: Command, name: string, description: string): Command {
  return projectCommand(parent, name, description).argument("<backup-id>", "the backup's id (see backups list)");
}

export function addBackupCommands(program: Command, print: Print): void {
  const backups = program.command("backups").description("list, take, restore, verify and download backups");

  projectCommand(backups, "list", "the project's backups, newest first").action(async (projectId: string, _options: object, command: Command) => {
    const call = invocation(command, print);
    const response = await call.client().listBackups({ projectId });
    call.reply(methods.listBackups.output, response, () => backupsTable(response.backups, response.recoveryWindow));
  });

  projectCommand(backups, "create", "take a backup now")
    .option("--wait", "return once the backup has finished (otherwise at once, with the running backup)")
    .action(async (projectId: string, options: { wait?: boolean }, command: Command) => {
      const call = invocation(command, print);
      const response = await call.client().createBackup({ projectId, wait: Boolean(options.wait) });
      call.reply(methods.createBackup.output, response, () => backupText(response.backup));
    });

  projectCommand(backups, "restore", "restore the database to a dump, or with --to to a point in time (a safety backup of the current state is taken first)")
    .argument("[backup-id]", "the dump to restore; with --to, the base backup to start from (default: the service picks the newest that reaches the time)")
    .option("--to <time>", "restore the database as it was at this time (RFC 3339 with a zone, e.g. 2026-11-30T14:05:00Z): a point-in-time restore")
    .action(async (projectId: string, backupId: string | undefined, options: { to?: string }, command: Command) => {
      const targetTime = options.to === undefined ? undefined : timeArgument("--to", options.to);
      if (!targetTime && !backupId) throw new UsageError("name the dump to restore, or give --to <time> for a point-in-time restore");
      const call = invocation(command, print);
      const response = await call.client().restoreBackup({ projectId, backupId: backupId ?? "-", ...(targetTime ? { targetTime } : {}) });
      call.reply(methods.restoreBackup.output, response, () =>
        [
          ...(response.targetTime ? [fields([["restored to", time(response.targetTime)]]), ""] : []),
          response.targetTime ? "from base backup:" : "restored:",
          backupText(response.restored),
          "",
          ...(response.safetyBackup
            ? ["safety backup (the state before the restore):", backupText(response.safetyBackup)]
            : [fields([["safety backup", "none (the database's server was not running: there was no state to save)"]])]),
        ].join("\n"),
      );
    });

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
