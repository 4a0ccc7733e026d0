import { setTimeout as sleep } from "node:timers/promises";

/** Waits `ms`; when `signal` aborts, throws its reason (not a generic AbortError). */
export async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => undefined);
  signal.throwIfAborted();
}
