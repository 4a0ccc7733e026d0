// Memory as the kernel accounts it, read from /proc. PSS (proportional set
// size) splits pages shared between processes (a postmaster and its backends
// share most of theirs) among them, so summing PSS over many instances counts
// each page once: RSS would count shared pages again in every process.
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export function pssBytes(pid: number): number {
  return kilobytesField(`/proc/${pid}/smaps_rollup`, "Pss");
}

export function rssBytes(pid: number): number {
  return kilobytesField(`/proc/${pid}/status`, "VmRSS");
}

/** Every live process below `pid` (children, grandchildren, ...), with its working directory. */
export function descendants(pid: number): { pid: number; cwd: string }[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const parent = parentOf(Number(name));
    if (parent === undefined) continue;
    children.set(parent, [...(children.get(parent) ?? []), Number(name)]);
  }
  const found: { pid: number; cwd: string }[] = [];
  const queue = [...(children.get(pid) ?? [])];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    try {
      found.push({ pid: next, cwd: readlinkSync(`/proc/${next}/cwd`) });
    } catch {
      continue; // exited meanwhile
    }
    queue.push(...(children.get(next) ?? []));
  }
  return found;
}

function parentOf(pid: number): number | undefined {
  try {
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

function kilobytesField(file: string, field: string): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(file, "utf8"));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
