// ensure, get, url, rotate, delete: one RPC each, printed as a table or as
// protobuf JSON. Only url and rotate print a URL (with its password): that is
// what they are asked for.
import { Option, type Command } from "commander";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";
import { databaseClient, type ApiOptions } from "./api.js";
import { backupText, databaseText, json, usageFields } from "./render.js";
import { fields } from "./table.js";
import { UsageError } from "./usage-error.js";

export interface GlobalOptions extends ApiOptions {
  readonly json?: boolean;
}

export type Print = (text: string) => void;

const methods = DatabaseService.method;

export function addDatabaseCommands(program: Command, print: Print): void {
  program
    .command("ensure")
    .description("provision the project's database, or return the one it has (idempotent)")
    .argument("<project-id>", "the project's UUID")
    .option("--slug <slug>", "name for the database and its role (first call only)")
    .action(async (projectId: string, options: { slug?: string }, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const response = await databaseClient(global).ensure({ projectId, slug: options.slug ?? "" });
      print(global.json ? json(methods.ensure.output, response) : databaseText(response.database, [["created", response.created ? "yes (this call)" : "no (already there)"]]));
    });

  program
    .command("get")
    .description("describe the project's database and its live figures (no secret)")
    .argument("<project-id>", "the project's UUID")
    .action(async (projectId: string, _options: object, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const response = await databaseClient(global).getDatabase({ projectId });
      print(global.json ? json(methods.getDatabase.output, response) : databaseText(response.database, usageFields(response.usage, response.usageUnavailable)));
    });

  program
    .command("url")
    .description("print the DATABASE_URL, password included (deployer and admin tokens)")
    .argument("<project-id>", "the project's UUID")
    .option("--session", "the session-pooling URL instead (migrations, LISTEN/NOTIFY, pg_dump, psql restores)")
    .action(async (projectId: string, options: { session?: boolean }, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const response = await databaseClient(global).getConnection({ projectId });
      print(global.json ? json(methods.getConnection.output, response) : options.session ? response.sessionUrl : response.databaseUrl);
    });

  program
    .command("rotate")
    .description("give the app role a new password and print the new DATABASE_URL")
    .argument("<project-id>", "the project's UUID")
    .action(async (projectId: string, _options: object, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const response = await databaseClient(global).rotateCredentials({ projectId });
      print(global.json ? json(methods.rotateCredentials.output, response) : response.databaseUrl);
    });

  program
    .command("delete")
    .description("take a final backup, then remove the project's database (its backups stay for a while)")
    .argument("<project-id>", "the project's UUID")
    .addOption(new Option("--skip-final-backup", "delete without a final backup (the only way when that backup fails)"))
    .option("--yes", "confirm: this removes the database")
    .action(async (projectId: string, options: { skipFinalBackup?: boolean; yes?: boolean }, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      if (!options.yes) throw new UsageError("delete removes the database: add --yes to confirm");
      const response = await databaseClient(global).deleteDatabase({ projectId, skipFinalBackup: Boolean(options.skipFinalBackup) });
      if (global.json) return print(json(methods.deleteDatabase.output, response));
      const finalBackup = response.finalBackup ? ["", "final backup:", backupText(response.finalBackup)] : ["", fields([["final backup", "none (skipped)"]])];
      print([databaseText(response.database), ...finalBackup].join("\n"));
    });
}
