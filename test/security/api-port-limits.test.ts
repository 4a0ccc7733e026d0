// Item 6 of the tenant-isolation issue: the API port gives nothing away to a
// client that never finishes talking. Raw sockets against the real service:
// a silent connection, half-sent HTTP/1 headers and a bare HTTP/2 preface are
// closed within the configured bound; connections beyond the cap are refused
// while a normal client is served once they are gone; a REST call without a
// valid token gets its 401 before its body (which never finishes) is read.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";

/** The bound the service is configured with for these tests. */
const HEADER_TIMEOUT_MS = 2_000;
const MAX_CONNECTIONS = 8;
/** How long a test waits for the service to act on that bound: generous, it only separates "closed" from "open forever". */
const WAIT_MS = HEADER_TIMEOUT_MS * 2 + 8_000;

const run = promisify(execFile);
const TSX = fileURLToPath(import.meta.resolve("tsx"));
const REFUSED_CALLS_CLIENT = fileURLToPath(new URL("../support/refused-calls-client.ts", import.meta.url));

let h: Harness;
let port: number;

beforeAll(async () => {
  h = await startHarness({
    SOTA_HTTP_HEADER_TIMEOUT_MS: String(HEADER_TIMEOUT_MS),
    SOTA_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
  });
  port = h.app.address.port;
});

afterAll(async () => {
  await h?.stop();
});

interface RawSocket {
  readonly socket: net.Socket;
  /** Everything the server sent. */
  received(): string;
  /** Resolves true when the server closed the connection within ms, false if it is still open then. */
  closedWithin(ms: number): Promise<boolean>;
}

async function connect(): Promise<RawSocket> {
  const socket = net.connect(port, "127.0.0.1");
  let received = "";
  let closed = false;
  const onClose = new Promise<void>((resolve) => socket.once("close", () => ((closed = true), resolve())));
  socket.on("data", (chunk) => (received += chunk.toString("latin1")));
  socket.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return {
    socket,
    received: () => received,
    async closedWithin(ms) {
      if (closed) return true;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
      const result = await Promise.race([onClose.then(() => true), timeout]);
      clearTimeout(timer);
      return result;
    },
  };
}

function healthz(): Promise<number> {
  return fetch(`${h.app.url}/healthz`).then((response) => response.status);
}

describe("API port bounds every phase of a connection", () => {
  it.each([
    ["never sends a byte", Buffer.alloc(0)],
    ["sends HTTP/1 headers that never end", Buffer.from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", "latin1")],
    // The client preface, then an empty SETTINGS frame: a valid session that never opens a stream.
    ["sends an HTTP/2 preface and nothing else", Buffer.concat([http2Preface(), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])],
  ])("closes a connection that %s", async (_name, payload) => {
    const raw = await connect();
    try {
      if (payload.length > 0) raw.socket.write(payload);
      expect(await raw.closedWithin(WAIT_MS)).toBe(true);
    } finally {
      raw.socket.destroy();
    }
  });

  it("refuses connections beyond the cap, and serves a normal client once they are gone", async () => {
    const held: RawSocket[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS; i++) held.push(await connect());
      // One more, with a complete request: without a cap it would be answered.
      const extra = await connect();
      extra.socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      expect(await extra.closedWithin(WAIT_MS)).toBe(true);
      expect(extra.received()).not.toContain("200 OK");
      extra.socket.destroy();
    } finally {
      for (const raw of held) raw.socket.destroy();
    }
    // The server notices the closes on its own time: a few bounded tries.
    let status = 0;
    for (let attempt = 0; attempt < 20 && status !== 200; attempt++) {
      status = await healthz().catch(() => 0);
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(status).toBe(200);
  });

  const ENSURE_RPC = "/sota.database.v1.DatabaseService/Ensure";

  it.each([
    ["a REST POST", "rest", undefined],
    ["a REST POST", "rest", "Bearer not-a-token-of-this-service"],
    ["a Connect call", "rpc", undefined],
    ["a Connect call", "rpc", "Bearer not-a-token-of-this-service"],
  ])("answers 401 to %s (%s) with token %s without waiting for its body (HTTP/1.1)", async (_name, kind, authorization) => {
    const raw = await connect();
    try {
      raw.socket.write(
        [
          `POST ${kind === "rest" ? `/v1/projects/${h.projectId}/database` : ENSURE_RPC} HTTP/1.1`,
          "Host: 127.0.0.1",
          "Content-Type: application/json",
          "Connect-Protocol-Version: 1",
          "Content-Length: 100000",
          ...(authorization ? [`Authorization: ${authorization}`] : []),
          "",
          `{"projectId": "${h.projectId}", "slug": "a`,
        ].join("\r\n"),
      );
      const status = await firstStatusLine(raw, WAIT_MS);
      expect(status).toMatch(/^HTTP\/1\.1 401 /);
    } finally {
      raw.socket.destroy();
    }
  });

  it.each([
    ["a Connect client's call", "connect", "Unauthenticated: unknown bearer token"],
    ["a REST POST with a body", "rest", "401"],
  ])("answers %s that it refuses before the body with the refusal every time, never with a reset (HTTP/1.1)", async (_name, kind, refusal) => {
    // The client writes its body after the head and reads the answer once the
    // body is out (the CLI's transport does). A refusal that closed the socket
    // with that body unread made the kernel reset the connection: about one
    // call in six failed with "write EPIPE" instead of the server's answer.
    const { stdout } = await run(process.execPath, ["--import", TSX, REFUSED_CALLS_CLIENT], {
      env: { ...process.env, SOTA_URL: h.app.url, PROJECT_ID: h.projectId, KIND: kind, CALLS: "200" },
      timeout: 60_000,
    });
    expect(JSON.parse(stdout)).toEqual({ [refusal]: 200 });
  });

  it("still counts the refused calls in the metrics", async () => {
    const metrics = await (await fetch(`${h.app.url}/metrics`, { headers: { authorization: `Bearer ${h.tokens.admin}` } })).text();
    expect(metrics).toMatch(/sota_rpc_requests_total\{method="Ensure",code="unauthenticated"\} [1-9]/);
  });

  it.each([
    ["a REST POST", `/v1/projects/{id}/database`, "application/json", 401, undefined],
    ["a gRPC call", ENSURE_RPC, "application/grpc", 200, "16"],
  ])("answers %s without a token whose HTTP/2 body never ends with unauthenticated", async (_name, path, contentType, status, grpcStatus) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": path.replace("{id}", h.projectId),
        "content-type": contentType,
        ...(contentType === "application/grpc" ? { te: "trailers" } : {}),
      });
      stream.on("error", () => undefined);
      // Half a message: a gRPC frame header announcing 100 bytes, or half a JSON object.
      stream.write(contentType === "application/grpc" ? Buffer.from([0, 0, 0, 0, 100, 10]) : '{"slug": "a');
      const answer = new Promise<{ headers?: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders }>((resolve) => {
        const seen: { headers?: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders } = {};
        const timer = setTimeout(() => resolve(seen), WAIT_MS);
        const done = (): void => (clearTimeout(timer), resolve(seen));
        stream.once("response", (headers) => {
          seen.headers = headers;
          if (!grpcStatus || headers["grpc-status"] !== undefined) done();
        });
        stream.once("trailers", (trailers) => ((seen.trailers = trailers), done()));
        stream.once("close", done);
        stream.resume();
      });
      const { headers, trailers } = await answer;
      expect(Number(headers?.[":status"])).toBe(status);
      // gRPC carries the code in the trailers (or, trailers-only, in the headers).
      if (grpcStatus) expect(trailers?.["grpc-status"] ?? headers?.["grpc-status"]).toBe(grpcStatus);
    } finally {
      session.destroy();
    }
  });
});

function http2Preface(): Buffer {
  return Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
}

/** The first status line the server sent, or "" if none came within ms. */
async function firstStatusLine(raw: RawSocket, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const text = raw.received();
    const end = text.indexOf("\r\n");
    if (end >= 0) return text.slice(0, end);
    if (await raw.closedWithin(100)) return raw.received().split("\r\n")[0] ?? "";
  }
  return "";
}

describe("API port over TLS bounds the handshake and what follows", () => {
  let t: Harness;
  let certDir: string;
  let ca: Buffer;

  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), "sota-tls-limits-"));
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", join(certDir, "key.pem"), "-out", join(certDir, "cert.pem")],
      { stdio: "ignore" },
    );
    ca = readFileSync(join(certDir, "cert.pem"));
    t = await startHarness({
      SOTA_TLS_CERT_FILE: join(certDir, "cert.pem"),
      SOTA_TLS_KEY_FILE: join(certDir, "key.pem"),
      SOTA_HTTP_HEADER_TIMEOUT_MS: String(HEADER_TIMEOUT_MS),
    });
  });

  afterAll(async () => {
    await t?.stop();
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });

  async function tlsSocket(alpn: string): Promise<tls.TLSSocket> {
    const socket = tls.connect({ host: "127.0.0.1", port: t.app.address.port, ca, ALPNProtocols: [alpn] });
    socket.on("error", () => undefined);
    // Read what comes (a 408, a GOAWAY): a paused socket would never see the close.
    socket.resume();
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    return socket;
  }

  function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
    if (socket.destroyed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      socket.once("close", () => (clearTimeout(timer), resolve(true)));
    });
  }

  it("closes a connection that never starts its handshake", async () => {
    const socket = net.connect(t.app.address.port, "127.0.0.1");
    socket.on("error", () => undefined);
    socket.resume();
    try {
      expect(await closedWithin(socket, WAIT_MS)).toBe(true);
    } finally {
      socket.destroy();
    }
  });

  it.each([
    ["http/1.1", Buffer.from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", "latin1")],
    ["h2", Buffer.concat([http2Preface(), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])],
  ])("closes a %s connection whose request never comes", async (alpn, payload) => {
    const socket = await tlsSocket(alpn);
    try {
      socket.write(payload);
      expect(await closedWithin(socket, WAIT_MS)).toBe(true);
    } finally {
      socket.destroy();
    }
  });
});
