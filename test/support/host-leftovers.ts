// What a database leaves on the host, listed: after DeleteDatabase the list
// must be empty. The process runtime's footprint is taken while the database
// runs (its OS user's name is in its directory, which the delete removes).
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import Docker from "dockerode";
import { instancePaths } from "../../src/runtime/process/instance/instance-paths.js";

const run = promisify(execFile);

export interface ProcessFootprint {
  readonly dataDir: string;
  readonly projectId: string;
  readonly slug: string;
  readonly port: number;
  readonly instanceDir: string;
  /** PostgreSQL's socket directory: inside the instance's, or elsewhere when that path is too long for a socket. */
  readonly socketDir: string;
  /** The instance's own OS user, and its uid; absent where the service runs every instance as one shared user. */
  readonly osUser?: { readonly name: string; readonly uid: number };
}

/** Call while the database exists. */
export async function processFootprint(dataDir: string, projectId: string, slug: string, port: number): Promise<ProcessFootprint> {
  const { dir: instanceDir, socketDir } = instancePaths(dataDir, slug);
  const userFile = join(instanceDir, "os-user");
  const name = existsSync(userFile) ? readFileSync(userFile, "utf8").trim() : undefined;
  const uid = name ? Number((await run("id", ["-u", name])).stdout.trim()) : undefined;
  return { dataDir, projectId, slug, port, instanceDir, socketDir, ...(name && uid !== undefined ? { osUser: { name, uid } } : {}) };
}

/** Everything of the database still on the host, one line each: its directory, OS user, processes, port, port record. */
export async function processLeftovers(footprint: ProcessFootprint): Promise<string[]> {
  const left: string[] = [];
  for (const dir of new Set([footprint.instanceDir, footprint.socketDir])) if (existsSync(dir)) left.push(`directory ${dir}`);
  if (footprint.osUser) {
    const user = await run("getent", ["passwd", footprint.osUser.name]).then(
      () => true,
      () => false,
    );
    if (user) left.push(`OS user ${footprint.osUser.name}`);
  }
  const { stdout } = await run("ps", ["-eo", "pid=,uid=,args="]);
  for (const line of stdout.split("\n")) {
    const [pid, uid, ...args] = line.trim().split(/\s+/);
    if (!pid) continue;
    const command = args.join(" ");
    if (command.includes(footprint.instanceDir) || (footprint.osUser && Number(uid) === footprint.osUser.uid)) {
      left.push(`process ${pid}: ${command}`);
    }
  }
  if (await listening(footprint.port)) left.push(`listening port 127.0.0.1:${footprint.port}`);
  const state = new Database(join(footprint.dataDir, "state.db"), { readonly: true });
  try {
    const row = state.prepare("SELECT port FROM pooler_ports WHERE project_id = ?").get(footprint.projectId) as { port: number } | undefined;
    if (row) left.push(`pooler port record ${row.port}`);
  } finally {
    state.close();
  }
  return left;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Containers, volumes and networks the Docker driver labelled with the project's id. */
export async function dockerLeftovers(projectId: string, docker = new Docker()): Promise<string[]> {
  const filters = { label: [`io.sota.project-id=${projectId}`] };
  const containers = await docker.listContainers({ all: true, filters });
  const volumes = (await docker.listVolumes({ filters })).Volumes ?? [];
  const networks = await docker.listNetworks({ filters });
  return [
    ...containers.map((container) => `container ${container.Names.join(",")}`),
    ...volumes.map((volume) => `volume ${volume.Name}`),
    ...networks.map((network) => `network ${network.Name}`),
  ];
}
