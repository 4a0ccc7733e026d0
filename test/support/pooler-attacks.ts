// What a hostile local process does to a project's pooler port in the
// security tests: hold sockets open without logging in, squat the port while
// it is free, and pose as PostgreSQL to collect a password.
import { createServer, connect, type Server, type Socket } from "node:net";

/** Sockets opened to `port` that never authenticate; `closedByServer` counts those the pooler dropped. */
export interface IdleSockets {
  readonly sockets: readonly Socket[];
  closedByServer(): number;
  destroy(): void;
}

/**
 * Opens `count` connections to 127.0.0.1:`port`, each sending the first bytes
 * of a startup packet and nothing more: PgBouncer accepts each as a client in
 * its login phase (a socket that sends nothing at all waits in the kernel
 * until TCP_DEFER_ACCEPT lets it through, so it takes no slot meanwhile).
 * Resolves once all are connected.
 */
export async function openIdleSockets(port: number, count: number): Promise<IdleSockets> {
  let closed = 0;
  let destroying = false;
  const sockets = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const socket = connect({ host: "127.0.0.1", port });
          socket.once("error", reject);
          socket.once("connect", () => {
            socket.off("error", reject);
            socket.on("error", () => undefined);
            // Flowing, so that the pooler's closing is seen.
            socket.resume();
            socket.once("close", () => {
              if (!destroying) closed += 1;
            });
            // A startup packet's length (8 bytes would follow): a login in progress.
            socket.write(Buffer.from([0, 0, 0, 8]));
            resolve(socket);
          });
        }),
    ),
  );
  return {
    sockets,
    closedByServer: () => closed,
    destroy: () => {
      destroying = true;
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** Tries once to listen on 127.0.0.1:`port`; closes again at once when it works. */
export function tryToBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A fake PostgreSQL on 127.0.0.1:`port`: it answers every startup packet with
 * AuthenticationCleartextPassword, as a squatter would, and records every
 * PasswordMessage it receives (their count only: the test must not hold them).
 */
export class PasswordTrap {
  private server: Server | undefined;
  connections = 0;
  passwordsReceived = 0;

  async listen(port: number): Promise<void> {
    const server = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port, exclusive: true }, () => resolve());
    });
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private serve(socket: Socket): void {
    this.connections += 1;
    socket.on("error", () => undefined);
    let buffered = Buffer.alloc(0);
    let started = false;
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (!started) {
          if (buffered.length < 8) return;
          const length = buffered.readInt32BE(0);
          if (buffered.length < length) return;
          const code = buffered.readInt32BE(4);
          buffered = buffered.subarray(length);
          // SSLRequest or GSSENCRequest: "not supported", the client goes on in the clear.
          if (code === 80877103 || code === 80877104) {
            socket.write("N");
            continue;
          }
          started = true;
          socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])); // AuthenticationCleartextPassword
          continue;
        }
        if (buffered.length < 5) return;
        const length = buffered.readInt32BE(1);
        if (buffered.length < 1 + length) return;
        if (buffered[0] === 0x70) this.passwordsReceived += 1; // PasswordMessage
        buffered = buffered.subarray(1 + length);
        socket.end();
      }
    });
  }
}
