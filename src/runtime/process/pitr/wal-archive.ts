// One instance's WAL archive on disk, as the service (root) sees it:
//
//   {instance}/wal-generation      the service's: the current generation's id
//   {instance}/wal/                the service's (0710, the instance's group)
//   {instance}/wal/{generation}/   the instance's OS user's (0700): pg_receivewal
//                                  writes there, as that user
//
// A generation's directory is the child's: a tenant who became superuser of
// its cluster runs programs as that user and may put links, FIFOs or anything
// there. So the service only lists it (readdir, lstat), opens a file of it
// without following a link and without blocking, and takes it only when it is
// a plain file of the instance's user with one name; it deletes entries by
// name (unlink never follows a link), and empties a whole generation as the
// child's user. The generation directories themselves are entries of the
// service's wal/, which the child cannot rename, replace or add to.
import { constants } from "node:fs";
import { lstat, open, readdir, rename, rm, rmdir, unlink, type FileHandle } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { RuntimeError } from "../../runtime.js";
import { GENERATION_ID, isWalFileName, nextGenerationId, PARTIAL_SUFFIX, SEGMENT_NAME } from "../../shared/wal-names.js";
import type { InstancePaths } from "../instance/instance-paths.js";
import type { RunAs } from "../host/os-user.js";
import { ensureDir, ownedBy, passableBy, readIfExists, SERVICE_ONLY, SERVICE_USER, writeServiceFile } from "../host/owned-files.js";
import { runCommand } from "../children/run-command.js";

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** One file of a generation as found on disk. */
export interface ArchivedFile {
  /** The name PostgreSQL knows it by (without ".partial"). */
  readonly name: string;
  /** Its name on disk. */
  readonly fileName: string;
  readonly bytes: number;
  readonly modifiedAt: Date;
  /** False for the segment pg_receivewal is still writing. */
  readonly complete: boolean;
}

export class WalArchive {
  constructor(
    readonly paths: InstancePaths,
    /** The instance's OS user: the only owner a generation or a file of it may have. */
    readonly owner: RunAs,
    /** For messages. */
    readonly slug: string,
  ) {}

  generationDir(id: string): string {
    checkGenerationId(id);
    return join(this.paths.walDir, id);
  }

  /** The current generation's id, undefined before the first. */
  async current(): Promise<string | undefined> {
    const id = (await readIfExists(this.paths.walGeneration))?.trim();
    if (id === undefined || id === "") return undefined;
    if (!GENERATION_ID.test(id)) throw new RuntimeError("failed", `${this.paths.walGeneration} does not name a WAL generation; remove it`);
    return id;
  }

  /** Names `id` current (undefined: none); durable. */
  async setCurrent(id: string | undefined): Promise<void> {
    if (id !== undefined) checkGenerationId(id);
    await writeServiceFile(this.paths.walGeneration, id === undefined ? "" : `${id}\n`, SERVICE_ONLY);
  }

  /** The generations on disk, oldest first: directories of the instance's user with an id's name. */
  async generations(): Promise<string[]> {
    const names = await readdir(this.paths.walDir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [] as string[];
      throw error;
    });
    const found: string[] = [];
    for (const name of names) {
      if (!GENERATION_ID.test(name)) continue;
      const stats = await lstat(join(this.paths.walDir, name)).catch(() => undefined);
      if (stats?.isDirectory() && stats.uid === this.owner.uid) found.push(name);
    }
    return found.sort();
  }

  async hasGeneration(id: string): Promise<boolean> {
    return (await this.generations()).includes(id);
  }

  /**
   * The WAL files of generation `id`, oldest first. Anything else in its
   * directory (links, FIFOs, files of another owner or with another name) is
   * left out: pg_receivewal makes only plain files.
   */
  async files(id: string): Promise<ArchivedFile[]> {
    const dir = this.generationDir(id);
    const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [] as string[];
      throw error;
    });
    const files: ArchivedFile[] = [];
    for (const fileName of names) {
      const partial = fileName.endsWith(PARTIAL_SUFFIX);
      const name = partial ? fileName.slice(0, -PARTIAL_SUFFIX.length) : fileName;
      if (!isWalFileName(name) || (partial && !SEGMENT_NAME.test(name))) continue;
      const stats = await lstat(join(dir, fileName)).catch(() => undefined);
      if (!stats?.isFile() || stats.uid !== this.owner.uid || stats.nlink !== 1) continue;
      files.push({ name, fileName, bytes: stats.size, modifiedAt: stats.mtime, complete: !partial });
    }
    // A segment renamed from .partial between readdir and lstat is listed once.
    const unique = new Map<string, ArchivedFile>();
    for (const file of files) if (!unique.has(file.name) || file.complete) unique.set(file.name, file);
    return [...unique.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Opens WAL file `name` of generation `id` for reading (the segment still
   * being written under its complete name): only a plain file of the
   * instance's user with one name, never through a link, never blocking on a FIFO.
   */
  async open(id: string, name: string): Promise<FileHandle> {
    checkGenerationId(id);
    if (!isWalFileName(name)) throw new RuntimeError("failed", `${JSON.stringify(name.slice(0, 40))} is not the name of a WAL file`);
    const dir = this.generationDir(id);
    // The complete name again last: pg_receivewal may rename the partial segment between two tries.
    const candidates = SEGMENT_NAME.test(name) ? [name, `${name}${PARTIAL_SUFFIX}`, name] : [name];
    for (const fileName of candidates) {
      const handle = await open(join(dir, fileName), O_RDONLY | O_NOFOLLOW | O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return undefined;
        if (error.code === "ELOOP") throw this.planted(id, name);
        throw error;
      });
      if (handle === undefined) continue;
      const stats = await handle.stat();
      if (!stats.isFile() || stats.uid !== this.owner.uid || stats.nlink !== 1) {
        await handle.close();
        throw this.planted(id, name);
      }
      return handle;
    }
    throw new RuntimeError("failed", `WAL generation ${id} of ${this.slug} holds no file ${name}`);
  }

  /** Opens a new, empty generation (after the newest on disk) and makes it current. */
  async openGeneration(now = new Date()): Promise<string> {
    const id = nextGenerationId(now, await this.generations());
    await this.ensureGenerationDir(id);
    await this.setCurrent(id);
    return id;
  }

  /** The archive's and generation `id`'s directories, with their owners and modes. */
  async ensureGenerationDir(id: string): Promise<void> {
    await ensureDir(this.paths.walDir, passableBy(this.owner));
    await ensureDir(this.generationDir(id), ownedBy(this.owner));
  }

  /**
   * Deletes generation `id`. Its directory is first moved aside by name (an
   * entry of the service's wal/), then emptied by the instance's user, who
   * can delete nothing but its own files whatever it planted there, then removed.
   */
  async removeGeneration(id: string): Promise<void> {
    const dir = this.generationDir(id);
    const stats = await lstat(dir).catch(() => undefined);
    if (stats === undefined) return;
    const aside = join(this.paths.walDir, `.removing-${randomBytes(6).toString("hex")}`);
    await rename(dir, aside);
    await this.removeDir(aside);
  }

  /**
   * Deletes the segments of generation `id` older than `startSegment`
   * (history files stay, and the segment still being written, whatever its name).
   */
  async removeSegmentsBefore(id: string, startSegment: string): Promise<void> {
    if (!SEGMENT_NAME.test(startSegment)) throw new RuntimeError("failed", `${JSON.stringify(startSegment.slice(0, 40))} is not a WAL segment name`);
    const dir = this.generationDir(id);
    for (const file of await this.files(id)) {
      if (file.complete && SEGMENT_NAME.test(file.name) && file.name < startSegment) {
        // By name, in a directory no one can swap: removes the entry, never what a link points to.
        await unlink(join(dir, file.fileName)).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "ENOENT") throw error;
        });
      }
    }
  }

  /** Moved-aside directories a crash left in wal/; only where no removal can be in flight (under the project's lock). */
  async removeLeftovers(): Promise<void> {
    const names = await readdir(this.paths.walDir).catch(() => [] as string[]);
    for (const name of names) if (name.startsWith(".removing-")) await this.removeDir(join(this.paths.walDir, name));
  }

  private async removeDir(dir: string): Promise<void> {
    const stats = await lstat(dir).catch(() => undefined);
    if (stats === undefined) return;
    if (!stats.isDirectory()) {
      await unlink(dir);
      return;
    }
    if (stats.uid === SERVICE_USER.uid) {
      // The service's own (0700, made before the child ever had it): nothing in it is the child's.
      await rm(dir, { recursive: true, force: true });
      return;
    }
    if (stats.uid !== this.owner.uid) throw new RuntimeError("failed", `${dir} belongs to neither the service nor the OS user of ${this.slug}; remove it by hand`);
    // find -P never follows a link; as the child, it can only delete the child's.
    await runCommand("find", ["-P", dir, "-ignore_readdir_race", "-mindepth", "1", "-delete"], { runAs: this.owner, timeoutMs: 600_000 });
    await rmdir(dir);
  }

  private planted(id: string, name: string): RuntimeError {
    return new RuntimeError("failed", `${name} in WAL generation ${id} of ${this.slug} is not a WAL file of the database (a link or another kind of file was put there)`);
  }
}

export function checkGenerationId(id: string): void {
  if (!GENERATION_ID.test(id)) throw new RuntimeError("failed", `${JSON.stringify(id.slice(0, 40))} is not a WAL generation id`);
}
