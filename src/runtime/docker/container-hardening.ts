// What the driver's containers give up, so that a tenant who becomes
// superuser of its own PostgreSQL (and so runs commands as the container's
// postgres OS user) stays that unprivileged user, in that container.
//
// The official postgres image's entrypoint starts as root only to chown PGDATA
// and the socket directory, chmod them, and drop to the postgres user (gosu,
// su-exec, or setpriv in ours): CHOWN, DAC_OVERRIDE (to walk a 0700 PGDATA),
// FOWNER (chmod on what postgres owns), SETUID and SETGID, nothing more.
// Everything else Docker grants by default (NET_RAW, MKNOD, SYS_CHROOT, KILL,
// SETFCAP, ...) is dropped. no-new-privileges keeps a setuid-root binary of
// the image (su, mount, passwd, ...: the next CVE in one of them) from making
// the tenant root; gosu and setpriv need no such binary, they are root already.
// The pids limit keeps a fork bomb inside the tenant's own container.
import type Docker from "dockerode";

export interface Hardening {
  /** The only capabilities the container keeps; all others are dropped. */
  readonly capabilities: readonly string[];
  /** Processes and threads the container may hold at once (execs included). */
  readonly pidsLimit: number;
}

const NO_NEW_PRIVILEGES = "no-new-privileges:true";

/**
 * PostgreSQL: its entrypoint's needs, and room for max_connections (100)
 * backends, background workers, parallel workers and the service's execs.
 */
export const POSTGRES_HARDENING: Hardening = {
  capabilities: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"],
  pidsLimit: 512,
};

/** PgBouncer runs as its own unprivileged user from the start: one process, plus console execs. */
export const PGBOUNCER_HARDENING: Hardening = { capabilities: [], pidsLimit: 64 };

/** The seed copies the template as root with `cp -a`: read a 0700 tree, keep owners and modes. */
export const SEED_HARDENING: Hardening = { capabilities: ["CHOWN", "DAC_OVERRIDE", "FOWNER"], pidsLimit: 64 };

/** The HostConfig fields that apply `hardening`. */
export function hardenedHostConfig(
  hardening: Hardening,
): Required<Pick<Docker.HostConfig, "CapDrop" | "CapAdd" | "SecurityOpt" | "PidsLimit">> {
  return {
    CapDrop: ["ALL"],
    CapAdd: [...hardening.capabilities],
    SecurityOpt: [NO_NEW_PRIVILEGES],
    PidsLimit: hardening.pidsLimit,
  };
}

/** Engines report capabilities with or without the CAP_ prefix. */
function capabilityName(name: string): string {
  return name.toUpperCase().replace(/^CAP_/, "");
}

/** dockerode types these lists as any; the engine sends a list of strings, or null. */
function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : [];
}

/** Whether a container was created with this hardening, or a stricter set of capabilities (those made before it was added were not). */
export function isHardened(info: Docker.ContainerInspectInfo, hardening: Hardening): boolean {
  const host = info.HostConfig;
  const wanted = new Set(hardening.capabilities);
  return (
    strings(host.CapDrop).some((name) => capabilityName(name) === "ALL") &&
    strings(host.CapAdd).every((name) => wanted.has(capabilityName(name))) &&
    strings(host.SecurityOpt).some((option) => /^no-new-privileges(?::true|=true)?$/.test(option)) &&
    // Any pids limit: a project's own (see container-limits.ts) replaces the default.
    (host.PidsLimit ?? 0) > 0
  );
}
