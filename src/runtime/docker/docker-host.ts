// DOCKER_HOST → dockerode connection options. The service reads DOCKER_HOST
// through its validated config (not from process.env deep inside a library),
// so a bad value stops it at start with one line, like every other variable.
import type { DockerOptions } from "dockerode";

/** Undefined: no DOCKER_HOST, so dockerode's default socket (/var/run/docker.sock). */
export function dockerConnection(dockerHost: string | undefined): DockerOptions | undefined {
  if (!dockerHost) return undefined;
  const url = new URL(dockerHost);
  if (url.protocol === "unix:") return { socketPath: url.pathname };
  if (url.protocol === "tcp:" || url.protocol === "http:") {
    return { protocol: "http", host: url.hostname, port: Number(url.port || 2375) };
  }
  throw new Error(`unsupported DOCKER_HOST scheme ${url.protocol}`);
}
