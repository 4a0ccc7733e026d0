// token new, key new: offline, no service needed.
import { Option, type Command } from "commander";
import type { Role } from "../server/tokens.js";
import type { GlobalOptions, Print } from "./command-kit.js";
import { newMasterKey, newToken, ROLES } from "./offline.js";

export function addOfflineCommands(program: Command, print: Print, note: Print): void {
  const token = program.command("token").description("bearer tokens (offline)");
  token
    .command("new")
    .description("make a token: prints it once, and the line to add to SOTA_TOKENS_FILE (only its sha256)")
    .addOption(new Option("--role <role>", "what the token may do").choices(ROLES).makeOptionMandatory())
    .option("--project <project-id>", "the project a project token is bound to")
    .option("--name <name>", "the name the service logs for its calls (default: the role)")
    .action((options: { role: Role; project?: string; name?: string }, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const made = newToken(options.role, options.name, options.project);
      if (global.json) return print(JSON.stringify(made, null, 2));
      print(`${made.token}\n${JSON.stringify(made.entry)}`);
      note("The first line is the token: it is shown only this once. Add the second line to the JSON array in SOTA_TOKENS_FILE and restart the service.");
    });

  const key = program.command("key").description("master keys (offline)");
  key
    .command("new")
    .description("make a master key for SOTA_MASTER_KEY (base64 of 32 random bytes)")
    .action((_options: object, command: Command) => {
      const global = command.optsWithGlobals<GlobalOptions>();
      const made = newMasterKey();
      print(global.json ? JSON.stringify({ key: made }) : made);
    });
}
