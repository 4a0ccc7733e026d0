// sota-db: the command line for humans. Commander parses argv; every API
// command goes through the generated Connect client. Exit codes: 0 done,
// 1 the call failed (the server's code and message on stderr), 2 usage error.
import { Command, CommanderError, Option } from "commander";
import { ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { addBackupCommands } from "./backup-commands.js";
import { addDatabaseCommands } from "./database-commands.js";
import { addOfflineCommands } from "./offline-commands.js";
import { addOffsiteCommands } from "./offsite-commands.js";
import { UsageError } from "./usage-error.js";

export function buildProgram(): Command {
  const print = (text: string) => void process.stdout.write(`${text}\n`);
  const note = (text: string) => void process.stderr.write(`${text}\n`);
  const program = new Command("sota-db")
    .description("Manage sota-db databases: provision, connect, back up, restore")
    .addOption(new Option("--url <url>", "the API's base URL").env("SOTA_URL").default("http://127.0.0.1:8080"))
    .addOption(new Option("--token <token>", "bearer token (prefer SOTA_TOKEN: flags show in the process list)").env("SOTA_TOKEN"))
    .option("--json", "print the response as JSON (protobuf JSON, as the REST API answers)")
    .showHelpAfterError()
    .exitOverride();
  addDatabaseCommands(program, print);
  addBackupCommands(program, print);
  addOffsiteCommands(program, print);
  addOfflineCommands(program, print, note);
  // Subcommands report their own usage errors through the same path.
  for (const command of allCommands(program)) command.exitOverride();
  return program;
}

function allCommands(command: Command): Command[] {
  return command.commands.flatMap((child) => [child, ...allCommands(child)]);
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv], { from: "user" });
    return 0;
  } catch (error) {
    return failure(error);
  }
}

function failure(error: unknown): number {
  // Commander has already printed its message (or the help).
  if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
  if (error instanceof UsageError) {
    process.stderr.write(`sota-db: ${error.message}\n`);
    return 2;
  }
  if (error instanceof ConnectError) {
    process.stderr.write(`sota-db: ${codeToString(error.code)}: ${error.rawMessage}${causeText(error.cause, error.rawMessage)}\n`);
    return 1;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`sota-db: ${message}${causeText(error instanceof Error ? error.cause : undefined, message)}\n`);
  return 1;
}

/** fetch and the transport wrap the reason (ECONNREFUSED, a TLS problem) in a cause. */
function causeText(cause: unknown, message: string): string {
  if (!(cause instanceof Error) || message.includes(cause.message)) return "";
  const code = (cause as { code?: string }).code;
  return ` (${code ? `${code}: ` : ""}${cause.message})`;
}
