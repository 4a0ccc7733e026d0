// offsite recover: bring back every project object storage holds, through
// the API's ordinary Ensure (see offsite-recover.ts).
import type { Command } from "commander";
import { invocation, type Print } from "./command-kit.js";
import { concurrencyArgument, projectsToRecover, recoverEach } from "./offsite-recover.js";
import { table } from "./table.js";

export function addOffsiteCommands(program: Command, print: Print): void {
  const offsite = program.command("offsite").description("off-host copies in object storage (SOTA_BACKUP_S3_*)");
  offsite
    .command("recover")
    .description(
      "disaster recovery: Ensure, through the API, of every project whose manifest the bucket holds (--all, listed with SOTA_BACKUP_S3_*) or of those named; the service brings each back from the bucket. Reads the bucket with SOTA_BACKUP_S3_* (no master key needed). Exits 1 if any failed",
    )
    .argument("[project-ids...]", "only these projects")
    .option("--all", "every project the bucket holds")
    .option("--concurrency <n>", "Ensure calls at once", "4")
    .action(async (named: string[], options: { all?: boolean; concurrency: string }, command: Command) => {
      const concurrency = concurrencyArgument(options.concurrency);
      const call = invocation(command, print);
      const client = call.client();
      const { found, notInBucket } = await projectsToRecover(named, options.all === true, process.env);
      const outcomes = [
        ...(await recoverEach(client, found, concurrency)),
        ...notInBucket.map((projectId) => ({ projectId, slug: "", outcome: "failed" as const, error: "the bucket holds no manifest of this project; not ensured" })),
      ];
      if (call.global.json) print(JSON.stringify(outcomes, null, 2));
      else if (outcomes.length === 0) print("the bucket holds no project");
      else print(table(["PROJECT", "SLUG", "OUTCOME"], outcomes.map((outcome) => [outcome.projectId, outcome.slug, outcome.outcome === "failed" ? `failed: ${outcome.error}` : outcome.outcome])));
      const failed = outcomes.filter((outcome) => outcome.outcome === "failed").length;
      if (failed > 0) throw new Error(`${failed} of ${outcomes.length} projects were not recovered`);
    });
}
