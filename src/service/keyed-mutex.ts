// Serialises work per key (a project id): two deploys calling Ensure for the
// same project at once must produce one database and one password, while
// different projects proceed in parallel.
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(work, work);
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      // Forget the key once nothing is queued behind this call.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}
