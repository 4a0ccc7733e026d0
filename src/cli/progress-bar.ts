// A one-line progress bar on stderr, drawn only when stderr is a terminal (so
// pipes and CI logs get none). A few lines of our own: redrawing one line with
// "\r" does not need a library.
import { bytes } from "./table.js";

export interface Progress {
  update(done: number): void;
  stop(): void;
}

const WIDTH = 30;
const REDRAW_MS = 100;

export function progressBar(stream: NodeJS.WriteStream, total: number | undefined): Progress {
  if (!stream.isTTY) return { update() {}, stop() {} };
  let last = 0;
  let current = 0;
  const draw = () => {
    if (total && total > 0) {
      const ratio = Math.min(1, current / total);
      const filled = Math.round(ratio * WIDTH);
      stream.write(`\r[${"#".repeat(filled)}${"-".repeat(WIDTH - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}%  ${bytes(current)} / ${bytes(total)}\x1b[K`);
    } else {
      stream.write(`\r${bytes(current)}\x1b[K`);
    }
  };
  return {
    update(done) {
      current = done;
      const now = Date.now();
      if (now - last >= REDRAW_MS) {
        last = now;
        draw();
      }
    },
    stop() {
      draw();
      stream.write("\n");
    },
  };
}
