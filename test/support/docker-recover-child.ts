// A service process that only recovers one database, for the test that kills
// it in the middle (test/runtime/docker-pitr.test.ts): node --import tsx
// docker-recover-child.ts, with the request as JSON on argv[2]. Logs go to
// stdout, one JSON line each, so the test can act at a given step.
import { createReadStream } from "node:fs";
import { createDockerRuntime } from "../../src/runtime/docker/index.js";
import { createLogger } from "../../src/log.js";
import type { DatabaseSpec } from "../../src/runtime/runtime.js";

interface Request {
  readonly spec: DatabaseSpec;
  readonly basePath: string;
  readonly generation: string;
  readonly postgresImage: string;
  readonly pgbouncerImage: string;
  readonly appNetwork: string;
  readonly labels: Record<string, string>;
}

const request = JSON.parse(process.argv[2] ?? "{}") as Request;
const runtime = createDockerRuntime({
  postgresImage: request.postgresImage,
  pgbouncerImage: request.pgbouncerImage,
  appNetwork: request.appNetwork,
  publishHost: "127.0.0.1",
  labels: request.labels,
  logger: createLogger({ level: "debug" }),
});
await runtime.pitr.recover(request.spec, createReadStream(request.basePath), { source: request.spec, generation: request.generation });
console.log(JSON.stringify({ msg: "child: recovered" }));
await runtime.close();
