// Acting as a tenant that has become superuser of its own cluster in the
// Docker runtime (the next PostgreSQL CVE): SQL as the postgres superuser in
// its container, and through COPY ... FROM PROGRAM, shell commands run by the
// server as the container's postgres OS user.
import type Docker from "dockerode";
import { roleConninfo } from "../../src/runtime/docker/app-role-sql.js";
import { execCollect } from "../../src/runtime/docker/docker-exec.js";

export interface ShellOutcome {
  readonly exitCode: number;
  readonly output: string;
}

/**
 * psql as the cluster's superuser, inside `container`, as a tenant would log
 * in: without the search_path the service pins for its own sessions. Fails the
 * test when psql does.
 */
export async function superuserSql(docker: Docker, container: string, sql: string, database = "postgres"): Promise<string> {
  const outcome = await execCollect(docker, docker.getContainer(container), {
    cmd: ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "--dbname", roleConninfo("postgres", database)],
    user: "postgres",
    stdin: `${sql}\n`,
  });
  if (outcome.exitCode !== 0) throw new Error(`psql in ${container} failed: ${outcome.stderr}`);
  return outcome.stdout.trim();
}

/**
 * Runs `script` under sh as PostgreSQL's own child, the way a superuser does
 * with COPY FROM PROGRAM; its output (stderr too) comes back through a temp
 * table. The script travels base64-encoded, so no quoting reaches SQL.
 */
export async function shellAsTenantSuperuser(docker: Docker, container: string, script: string): Promise<ShellOutcome> {
  const encoded = Buffer.from(script, "utf8").toString("base64");
  const program = `echo ${encoded} | base64 -d | sh 2>&1; echo "exit=$?"`;
  const rows = await superuserSql(
    docker,
    container,
    [
      "CREATE TEMP TABLE shell_output (line text);",
      // Delimiter and quote characters no output holds: each line is one column.
      `COPY shell_output FROM PROGRAM '${program}' WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02');`,
      "SELECT coalesce(line, '') FROM shell_output;",
    ].join("\n"),
  );
  const lines = rows.split("\n");
  const last = lines.pop() ?? "";
  const exit = /^exit=(\d+)$/.exec(last);
  if (!exit) throw new Error(`no exit status from the tenant's shell: ${rows}`);
  return { exitCode: Number(exit[1]), output: lines.join("\n") };
}
