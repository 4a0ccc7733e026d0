// The service's hold on pooler ports: a held port cannot be bound by anyone
// else, connections wait for whoever is handed the socket (nothing here
// accepts them), and a released port is free again.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { connect, createServer, type Server } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { PoolerSockets, PortHoldError } from "../../src/runtime/process/host/pooler-sockets.js";
import { tryToBind } from "../support/pooler-attacks.js";
import { portRange } from "../support/process-runtime-harness.js";

// Offset 34 of the test beds' pooler port ranges.
const { min } = portRange(34);

describe("pooler sockets", () => {
  const sockets = new PoolerSockets();
  afterAll(() => sockets.close());

  it("holds a port: nobody else binds it, on 127.0.0.1 or on every address", async () => {
    const fd = sockets.hold(min);
    expect(fd).toBeGreaterThan(2);
    expect(sockets.hold(min)).toBe(fd);
    expect(await tryToBind(min)).toBe(false);
    const wildcard = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen({ port: min }, () => server.close(() => resolve(true)));
    });
    expect(wildcard).toBe(false);
  });

  it("accepts nothing itself: a client that connects is served by the process the socket is handed to", async () => {
    const client = connect({ host: "127.0.0.1", port: min });
    client.on("error", () => undefined);
    await new Promise((resolve) => client.once("connect", resolve));
    // Only now a stand-in for PgBouncer gets the socket, as its fd 3.
    const pooler = spawn(process.execPath, ["-e", "require('node:net').createServer((s) => s.end('pooler')).listen({ fd: 3 })"], {
      stdio: ["ignore", "ignore", "ignore", sockets.hold(min)],
    });
    try {
      const answer = await new Promise<string>((resolve) => {
        let text = "";
        client.on("data", (chunk: Buffer) => (text += chunk.toString()));
        client.once("end", () => resolve(text));
      });
      expect(answer).toBe("pooler");
    } finally {
      client.destroy();
      // Its copy of the socket must be gone before the release below is checked.
      const exited = once(pooler, "exit");
      pooler.kill("SIGKILL");
      await exited;
    }
  });

  it("lets the port go on release", async () => {
    sockets.release(min);
    expect(await tryToBind(min)).toBe(true);
  });

  it("says EADDRINUSE when another process has the port", async () => {
    const squatter: Server = createServer();
    await new Promise<void>((resolve) => squatter.listen({ host: "127.0.0.1", port: min + 1 }, resolve));
    try {
      expect(() => sockets.hold(min + 1)).toThrow(PortHoldError);
      expect(() => sockets.hold(min + 1)).toThrow(/EADDRINUSE/);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
    expect(sockets.hold(min + 1)).toBeGreaterThan(2);
  });
});
