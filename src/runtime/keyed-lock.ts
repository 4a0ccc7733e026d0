// Serialises work per slug: two ensures of one project at once must make one
// instance, while different projects proceed in parallel.
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(work);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** True while work for the key runs or waits. */
  busy(key: string): boolean {
    return this.tails.has(key);
  }

  /** Resolves once everything queued so far has finished. */
  async settled(): Promise<void> {
    await Promise.all(this.tails.values());
  }
}
