// ensure, get, clone, url, rotate, delete: one RPC each, printed as a table or as
// protobuf JSON. Only url and rotate print a URL (with its password): that is
// what they are asked for.
import type { Command } from "commander";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import { invocation, projectCommand, type Print } from "./command-kit.js";
import { backupText, databaseText, recoveryWindowFields, usageFields } from "./render.js";
import { fields } from "./table.js";
import { timeArgument } from "./time-argument.js";
import { UsageError } from "./usage-error.js";

const methods = DatabaseService.method;

export function addDatabaseCommands(program: Command, print: Print): void {
  projectCommand(program, "ensure", "provision the project's database, or return the one it has (idempotent)")
    .option("--slug <slug>", "name for the database and its role (first call only)")
    .action(async (projectId: string, options: { slug?: string }, command: Command) => {
      const call = invocation(command, print);
      const response = await call.client().ensure({ projectId, slug: options.slug ?? "" });
      call.reply(methods.ensure.output, response, () =>
        databaseText(response.database, [["created", response.created ? "yes (this call)" : "no (already there)"]]),
      );
    });

  projectCommand(program, "get", "describe the project's database and its live figures (no secret)").action(
    async (projectId: string, _options: object, command: Command) => {
      const call = invocation(command, print);
      const response = await call.client().getDatabase({ projectId });
      call.reply(methods.getDatabase.output, response, () =>
        databaseText(response.database, [...usageFields(response.usage, response.usageUnavailable), ...recoveryWindowFields(response.recoveryWindow)]),
      );
    },
  );

  projectCommand(program, "clone", "make the project's database from another project's data, as of now or a past time (admin and deployer tokens)")
    .requiredOption("--from <source-project-id>", "the project whose data is copied; its database is not changed")
    .option("--at <time>", "the source's data as of this time (RFC 3339 with a zone), within its recovery window; default: now")
    .option("--slug <slug>", "name for the new database and its role")
    .action(async (projectId: string, options: { from: string; at?: string; slug?: string }, command: Command) => {
      const targetTime = options.at === undefined ? undefined : timeArgument("--at", options.at);
      const call = invocation(command, print);
      const response = await call.client().cloneDatabase({ projectId, sourceProjectId: options.from, slug: options.slug ?? "", ...(targetTime ? { targetTime } : {}) });
      call.reply(methods.cloneDatabase.output, response, () => databaseText(response.database, [["cloned from", options.from]]));
    });

  projectCommand(program, "url", "print the DATABASE_URL, password included (deployer and admin tokens)")
    .option("--session", "the session-pooling URL instead (migrations, LISTEN/NOTIFY, pg_dump, psql restores)")
    .action(async (projectId: string, options: { session?: boolean }, command: Command) => {
      const call = invocation(command, print);
      const response = await call.client().getConnection({ projectId });
      call.reply(methods.getConnection.output, response, () => (options.session ? response.sessionUrl : response.databaseUrl));
    });

  projectCommand(program, "rotate", "give the app role a new password and print the new DATABASE_URL").action(
    async (projectId: string, _options: object, command: Command) => {
      const call = invocation(command, print);
      const response = await call.client().rotateCredentials({ projectId });
      call.reply(methods.rotateCredentials.output, response, () => response.databaseUrl);
    },
  );

  projectCommand(program, "delete", "take a final backup, then remove the project's database (its backups stay for a while)")
    .option("--skip-final-backup", "delete without a final backup (the only way when that backup fails)")
    .option("--yes", "confirm: this removes the database")
    .action(async (projectId: string, options: { skipFinalBackup?: boolean; yes?: boolean }, command: Command) => {
      const call = invocation(command, print);
      if (!options.yes) throw new UsageError("delete removes the database: add --yes to confirm");
      const response = await call.client().deleteDatabase({ projectId, skipFinalBackup: Boolean(options.skipFinalBackup) });
      call.reply(methods.deleteDatabase.output, response, () => {
        const finalBackup = response.finalBackup ? ["", "final backup:", backupText(response.finalBackup)] : ["", fields([["final backup", "none (skipped)"]])];
        return [databaseText(response.database), ...finalBackup].join("\n");
      });
    });
}
