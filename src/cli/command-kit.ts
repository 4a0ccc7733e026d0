// What every API command shares: the <project-id> argument, the global
// options, and printing a response as text or, with --json, as protobuf JSON.
import type { Command } from "commander";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { databaseClient, type ApiOptions, type DatabaseClient } from "./api.js";
import { json } from "./render.js";

export interface GlobalOptions extends ApiOptions {
  readonly json?: boolean;
}

export type Print = (text: string) => void;

export function projectCommand(parent: Command, name: string, description: string): Command {
  return parent.command(name).description(description).argument("<project-id>", "the project's UUID");
}

export interface Invocation {
  readonly global: GlobalOptions;
  readonly client: () => DatabaseClient;
  /** Prints the response as JSON with --json, else as text(). */
  reply<Desc extends DescMessage>(schema: Desc, response: MessageShape<Desc>, text: () => string): void;
}

export function invocation(command: Command, print: Print): Invocation {
  const global = command.optsWithGlobals<GlobalOptions>();
  return {
    global,
    client: () => databaseClient(global),
    reply: (schema, response, text) => print(global.json ? json(schema, response) : text()),
  };
}
