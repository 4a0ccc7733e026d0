// Which loopback ports a pooler can take. The port registry asks synchronously
// (inside its transaction), so that check reads the kernel's listening sockets
// from /proc; the bind that the service then holds (pooler-sockets.ts) settles it.
import { readFileSync } from "node:fs";

const LISTEN_STATE = "0A";

/** Ports with a listening TCP socket on any address (IPv4 or IPv6); empty where /proc is unavailable. */
export function listeningPorts(): Set<number> {
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      if (fields[3] !== LISTEN_STATE || !local) continue;
      const port = Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      if (Number.isInteger(port)) ports.add(port);
    }
  }
  return ports;
}
