// Item 6 of the tenant-isolation issue: the API port gives nothing away to a
// client that never finishes talking. Raw sockets against the real service:
// a silent connection, half-sent HTTP/1 headers and a bare HTTP/2 preface are
// closed within the configured bound; connections beyond the cap are refused
// while a normal client is served once they are gone; a REST call without a
// valid token gets its 401 before its body (which never finishes) is read.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHarness, type Harness } from "../support/app-harness.js";

/** The bound the service is configured with for these tests. */
const HEADER_TIMEOUT_MS = 2_000;
const MAX_CONNECTIONS = 8;
/** How long a test waits for the service to act on that bound: generous, it only separates "closed" from "open forever". */
const WAIT_MS = HEADER_TIMEOUT_MS * 2 + 8_000;

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

  it.each([
    ["no token", undefined],
    ["an unknown token", "Bearer not-a-token-of-this-service"],
  ])("answers 401 to a REST POST with %s without waiting for its body (HTTP/1.1)", async (_name, authorization) => {
    const raw = await connect();
    try {
      raw.socket.write(
        [
          `POST /v1/projects/${h.projectId}/database HTTP/1.1`,
          "Host: 127.0.0.1",
          "Content-Type: application/json",
          "Content-Length: 100000",
          ...(authorization ? [`Authorization: ${authorization}`] : []),
          "",
          '{"slug": "a',
        ].join("\r\n"),
      );
      const status = await firstStatusLine(raw, WAIT_MS);
      expect(status).toMatch(/^HTTP\/1\.1 401 /);
    } finally {
      raw.socket.destroy();
    }
  });

  it("answers 401 to a REST POST without a token whose HTTP/2 body never ends", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => undefined);
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": `/v1/projects/${h.projectId}/database`,
        "content-type": "application/json",
      });
      stream.on("error", () => undefined);
      stream.write('{"slug": "a');
      const status = await new Promise<number | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), WAIT_MS);
        stream.once("response", (headers) => (clearTimeout(timer), resolve(Number(headers[":status"]))));
        stream.once("close", () => (clearTimeout(timer), resolve(undefined)));
      });
      expect(status).toBe(401);
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
