// What the numbers were measured on: a figure without its machine says nothing.
import { readFileSync } from "node:fs";
import { availableParallelism, cpus, release, totalmem } from "node:os";
import type { Binaries } from "../src/runtime/process/index.js";

export interface Machine {
  readonly date: string;
  readonly cores: number;
  readonly cpu: string;
  readonly memory: string;
  readonly os: string;
  readonly node: string;
  readonly postgres: string;
  readonly pgbouncer: string;
}

export function describeMachine(binaries: Binaries): Machine {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    cores: availableParallelism(),
    cpu: cpus()[0]?.model.replace(/\s+/g, " ").trim() ?? "unknown CPU",
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    os: `${distribution()}, Linux ${release()}`,
    node: process.versions.node,
    postgres: binaries.postgres.version,
    pgbouncer: binaries.pgbouncer.version,
  };
}

function distribution(): string {
  try {
    const osRelease = readFileSync("/etc/os-release", "utf8");
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? "Linux";
  } catch {
    return "Linux";
  }
}
