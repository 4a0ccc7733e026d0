// Every load loop of the benchmark is bounded twice: by a count and by time,
// so a slow or stuck machine makes a row smaller, never endless.

/** Runs `body` up to `count` times, stopping early once `budgetMs` has passed; returns how often it ran. */
export async function repeat(count: number, budgetMs: number, body: (index: number) => Promise<void>): Promise<number> {
  const until = Date.now() + budgetMs;
  let index = 0;
  while (index < count && (index === 0 || Date.now() < until)) {
    await body(index);
    index += 1;
  }
  return index;
}

/** Runs `workers` copies of `body` at once, each taking tasks until `count` are taken or `budgetMs` has passed. */
export async function concurrently(workers: number, count: number, budgetMs: number, body: (index: number) => Promise<void>): Promise<number> {
  const until = Date.now() + budgetMs;
  let taken = 0;
  const worker = async (): Promise<void> => {
    while (taken < count && Date.now() < until) {
      taken += 1;
      await body(taken - 1);
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  return taken;
}
