// `docker exec` as the one way into a container: commands run inside, stdin
// fed from a string or a stream, stdout/stderr separated with dockerode's
// demuxStream and consumed as they arrive (never buffered whole).
import { PassThrough, Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type Docker from "dockerode";

export interface ExecSpec {
  readonly cmd: readonly string[];
  readonly user?: string;
  /** KEY=value pairs; the way secrets reach a command (never its argv). */
  readonly env?: readonly string[];
  readonly stdin?: string | Readable;
}

export interface ExecOutcome {
  readonly exitCode: number;
  /** The end of stderr (bounded), for error messages after redaction. */
  readonly stderr: string;
  /** Set when a stdin stream failed (its source errored or the command stopped reading). */
  readonly stdinError?: Error;
}

export interface CollectedExec extends ExecOutcome {
  readonly stdout: string;
}

const STDERR_KEEP = 8 * 1024;
const STDOUT_LIMIT = 64 * 1024 * 1024;

/** Keeps only the last `limit` bytes written to it. */
class TailBuffer extends Writable {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.limit && this.chunks.length > 1) {
      this.size -= this.chunks.shift()?.length ?? 0;
    }
    done();
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString("utf8");
  }
}

/** Collects stdout up to a limit, failing beyond it (answers of admin queries); limit 0 discards. */
class BoundedBuffer extends Writable {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.limit === 0) {
      done();
      return;
    }
    this.size += chunk.length;
    if (this.size > this.limit) {
      done(new Error(`command output exceeds ${this.limit} bytes`));
      return;
    }
    this.chunks.push(chunk);
    done();
  }
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

interface StartedExec {
  readonly exec: Docker.Exec;
  readonly stream: NodeJS.ReadWriteStream & { destroy?: (error?: Error) => void };
}

async function startExec(container: Docker.Container, spec: ExecSpec): Promise<StartedExec> {
  const exec = await container.exec({
    Cmd: [...spec.cmd],
    User: spec.user ?? "",
    Env: spec.env ? [...spec.env] : [],
    AttachStdin: spec.stdin !== undefined,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
  });
  const stream = (await exec.start({ hijack: true, stdin: spec.stdin !== undefined })) as StartedExec["stream"];
  return { exec, stream };
}

/**
 * Feeds stdin, then half-closes it so the command sees end of input. Resolves
 * with the failure instead of rejecting: a command that exits early (psql
 * stopping at an error) breaks the pipe, and its exit code says more.
 */
async function feedStdin(stream: StartedExec["stream"], stdin: string | Readable | undefined): Promise<Error | undefined> {
  if (stdin === undefined) return undefined;
  if (typeof stdin === "string") {
    stream.end(stdin);
    return undefined;
  }
  try {
    await pipeline(stdin, stream as unknown as NodeJS.WritableStream);
    return undefined;
  } catch (error) {
    stream.destroy?.();
    return error instanceof Error ? error : new Error(String(error));
  }
}

/**
 * Settles when the engine stream is over, however it ended: the exit code,
 * asked for next, tells whether the command succeeded.
 */
function ended(stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve) => {
    stream.once("end", () => resolve());
    stream.once("close", () => resolve());
    stream.once("error", () => resolve());
  });
}

/** The exit code, once the engine has noticed the process is gone. */
async function exitCodeOf(exec: Docker.Exec): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const info = await exec.inspect();
    if (!info.Running && info.ExitCode !== null) return info.ExitCode;
    if (attempt >= 100) return info.ExitCode ?? -1;
    await sleep(Math.min(10 * (attempt + 1), 100));
  }
}

/**
 * Runs a command and collects its stdout (bounded, or discarded) and the tail
 * of stderr: admin queries, console commands, readiness checks, restores.
 */
export async function execCollect(
  docker: Docker,
  container: Docker.Container,
  spec: ExecSpec,
  options: { readonly discardStdout?: boolean } = {},
): Promise<CollectedExec> {
  const { exec, stream } = await startExec(container, spec);
  const stdout = new BoundedBuffer(options.discardStdout ? 0 : STDOUT_LIMIT);
  const stderr = new TailBuffer(STDERR_KEEP);
  let overflow: Error | undefined;
  stdout.on("error", (error) => {
    overflow = error;
    stream.destroy?.(error);
  });
  docker.modem.demuxStream(stream, stdout, stderr);
  const [, stdinError] = await Promise.all([ended(stream), feedStdin(stream, spec.stdin)]);
  if (overflow) throw overflow;
  return {
    exitCode: await exitCodeOf(exec),
    stdout: stdout.text(),
    stderr: stderr.text(),
    ...(stdinError ? { stdinError } : {}),
  };
}

/**
 * Runs a command and returns its stdout as a stream with backpressure: when the
 * consumer falls behind, reading from the engine pauses. Once the output is
 * over, `failure` looks at the exit code: the stream ends cleanly only when it
 * returns nothing, and errors with what it returns otherwise, so a consumer
 * can never mistake a cut-off output for a whole one.
 */
export function execReadable(
  docker: Docker,
  container: Promise<Docker.Container>,
  spec: ExecSpec,
  failure: (outcome: ExecOutcome) => Error | undefined,
  onError: (error: unknown) => Error,
): Readable {
  const stdout = new PassThrough();
  void (async () => {
    const { exec, stream } = await startExec(await container, spec);
    const stderr = new TailBuffer(STDERR_KEEP);
    // demuxStream ignores write()'s return value; this sink turns a full
    // consumer buffer into a paused engine stream.
    let paused = false;
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        // Chunks already read still arrive after the pause: one resume is enough.
        if (!stdout.write(chunk) && !paused) {
          paused = true;
          stream.pause();
          stdout.once("drain", () => {
            paused = false;
            stream.resume();
          });
        }
        callback();
      },
    });
    // A consumer that gives up early must not keep the command running.
    stdout.once("close", () => {
      if (!stdout.writableFinished) stream.destroy?.();
    });
    docker.modem.demuxStream(stream, sink, stderr);
    const [, stdinError] = await Promise.all([ended(stream), feedStdin(stream, spec.stdin)]);
    if (stdout.destroyed) return;
    const error = failure({
      exitCode: await exitCodeOf(exec),
      stderr: stderr.text(),
      ...(stdinError ? { stdinError } : {}),
    });
    if (error) stdout.destroy(error);
    else stdout.end();
  })().catch((error: unknown) => {
    if (!stdout.destroyed) stdout.destroy(onError(error));
  });
  return stdout;
}

/** A container's log as text, read whole without a TTY: frames of an 8-byte header and a payload. */
export function demuxedLog(buffer: Buffer): string {
  const parts: Buffer[] = [];
  for (let offset = 0; offset + 8 <= buffer.length; ) {
    const length = buffer.readUInt32BE(offset + 4);
    parts.push(buffer.subarray(offset + 8, offset + 8 + length));
    offset += 8 + length;
  }
  return Buffer.concat(parts).toString("utf8");
}
