// Run as its own process by api-port-limits.test.ts: a client in the same
// process as the service shares its event loop, which hides the race between
// the server closing a refused connection and the client still writing.
// Makes CALLS refused calls of one KIND ("connect": the Connect client over
// HTTP/1.1, as the CLI; "rest": a POST with a body) and prints each distinct
// outcome with its count as JSON.
import * as net from "node:net";
import { Code, ConnectError, createDatabaseClient } from "sota-db/client";

const baseUrl = process.env["SOTA_URL"]!;
const projectId = process.env["PROJECT_ID"]!;
const kind = process.env["KIND"];
const calls = Number(process.env["CALLS"] ?? "200");
const token = "not-a-token-of-this-service";

async function connectCall(): Promise<string> {
  const client = createDatabaseClient({ baseUrl, token, transport: "connect" });
  const error = await client.getDatabase({ projectId }).catch((reason: unknown) => reason);
  return error instanceof ConnectError ? `${Code[error.code]}: ${error.rawMessage}` : String(error);
}

/** The status line's code, once the server closed the connection; a socket error while writing or reading wins. */
function restCall(): Promise<string> {
  const url = new URL(baseUrl);
  const body = JSON.stringify({ slug: "x".repeat(40) });
  const head = [
    `POST /v1/projects/${projectId}/database HTTP/1.1`,
    `Host: ${url.host}`,
    "Content-Type: application/json",
    `Content-Length: ${body.length}`,
    `Authorization: Bearer ${token}`,
    "",
    "",
  ].join("\r\n");
  return new Promise((resolve) => {
    let received = "";
    let failure: string | undefined;
    const socket = net.connect(Number(url.port), url.hostname, () => {
      // The head first and the body in two parts a moment later, as a client streaming its body sends them.
      socket.write(head);
      setTimeout(() => socket.write(body.slice(0, 20)), 1);
      setTimeout(() => socket.write(body.slice(20)), 3);
    });
    socket.on("data", (chunk) => (received += chunk.toString("latin1")));
    socket.on("error", (error) => (failure ??= error.message));
    socket.on("close", () => resolve(failure ?? /^HTTP\/1\.1 (\d+)/.exec(received)?.[1] ?? `no answer: ${received}`));
  });
}

const outcomes: Record<string, number> = {};
for (let call = 0; call < calls; call++) {
  const outcome = kind === "rest" ? await restCall() : await connectCall();
  outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
}
process.stdout.write(JSON.stringify(outcomes));
