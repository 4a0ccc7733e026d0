// Makes sure an image is present, pulling it (with progress in the logs) when
// it is not. A pull that fails is "unavailable": nothing can start without it.
import type Docker from "dockerode";
import type { Logger } from "../../log.js";
import { RuntimeError } from "../runtime.js";
import { engineMessage, isNotFound, toRuntimeError } from "./docker-errors.js";

interface PullEvent {
  readonly status?: string;
  readonly id?: string;
  readonly progressDetail?: { readonly current?: number; readonly total?: number };
  readonly error?: string;
}

const PROGRESS_LOG_INTERVAL_MS = 2_000;

export class ImagePuller {
  /** One pull per image at a time, shared by every ensure that needs it. */
  private readonly pulls = new Map<string, Promise<void>>();

  constructor(
    private readonly docker: Docker,
    private readonly logger: Logger,
    private readonly engine: string,
  ) {}

  async ensure(image: string): Promise<void> {
    try {
      await this.docker.getImage(image).inspect();
      return;
    } catch (error) {
      if (!isNotFound(error)) throw toRuntimeError(error, `inspecting image ${image}`, this.engine);
    }
    let pull = this.pulls.get(image);
    if (!pull) {
      pull = this.pull(image).finally(() => this.pulls.delete(image));
      this.pulls.set(image, pull);
    }
    await pull;
  }

  private async pull(image: string): Promise<void> {
    this.logger.info({ image }, "pulling image");
    const started = Date.now();
    try {
      const stream = await this.docker.pull(image);
      await new Promise<void>((resolve, reject) => {
        const layers = new Map<string, { current: number; total: number }>();
        let lastLog = 0;
        const onProgress = (event: PullEvent) => {
          if (event.error) return;
          if (event.id && event.progressDetail?.total) {
            layers.set(event.id, {
              current: event.progressDetail.current ?? 0,
              total: event.progressDetail.total,
            });
          }
          const now = Date.now();
          if (now - lastLog < PROGRESS_LOG_INTERVAL_MS) return;
          lastLog = now;
          let current = 0;
          let total = 0;
          for (const layer of layers.values()) {
            current += layer.current;
            total += layer.total;
          }
          this.logger.info(
            { image, status: event.status, layers: layers.size, downloadedBytes: current, totalBytes: total },
            "pulling image: progress",
          );
        };
        this.docker.modem.followProgress(
          stream,
          (error: Error | null, events: PullEvent[]) => {
            const failed = error ?? events.find((event) => event.error)?.error;
            if (failed) reject(failed instanceof Error ? failed : new Error(failed));
            else resolve();
          },
          onProgress,
        );
      });
    } catch (error) {
      const reason = toRuntimeError(error, `pulling image ${image}`, this.engine);
      if (reason.reason === "unavailable") throw reason;
      throw new RuntimeError(
        "unavailable",
        `image ${image} is not present on the Docker engine and could not be pulled: ${engineMessage(error)}`,
        { cause: error },
      );
    }
    this.logger.info({ image, ms: Date.now() - started }, "pulled image");
  }
}
