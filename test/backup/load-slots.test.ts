// Verification/restore slots: the API's loads start now or are refused, one
// per project and a few in all; the schedule's wait their turn.
import { describe, expect, it } from "vitest";
import { LoadSlots } from "../../src/backup/load-slots.js";
import { DomainError } from "../../src/errors.js";

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

function refusal(work: () => unknown): string {
  try {
    work();
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe("resource_exhausted");
    return (error as DomainError).message;
  }
  throw new Error("expected a refusal");
}

describe("LoadSlots", () => {
  it("refuses a second load of one project, and any load past the bound, without running it", async () => {
    const slots = new LoadSlots(2);
    const first = gate();
    const second = gate();
    const a = slots.runNow("a", () => first.promise);
    expect(refusal(() => slots.runNow("a", async () => expect.unreachable()))).toMatch(/this project is already running/);
    const b = slots.runNow("b", () => second.promise);
    expect(refusal(() => slots.runNow("c", async () => expect.unreachable()))).toMatch(/as many backup verifications and restores as it allows/);
    first.open();
    await a;
    // A freed slot and a freed project take new work.
    await slots.runNow("a", async () => undefined);
    await slots.runNow("c", async () => undefined);
    second.open();
    await b;
  });

  it("queues the schedule's loads behind the bound instead of refusing them", async () => {
    const slots = new LoadSlots(1);
    const busy = gate();
    const running = slots.runNow("a", () => busy.promise);
    let started = false;
    const queued = slots.runQueued(async () => {
      started = true;
    });
    await Promise.resolve();
    expect(started).toBe(false);
    busy.open();
    await Promise.all([running, queued]);
    expect(started).toBe(true);
  });
});
