// Fetch what the user wants now, never a backlog: one request in flight at a time; while it runs,
// newer wishes replace each other and only the last is asked next. Answers are cached (bounded by
// size), so going back to a token is instant, and an answer for a key no longer wanted is kept but
// never shown.

/** A least-recently-used cache bounded by the summed `cost` of its values. */
export class LruCache<V> {
  private readonly map = new Map<string, { value: V; cost: number }>();
  private total = 0;

  constructor(
    private readonly budget: number,
    private readonly cost: (v: V) => number = () => 1,
  ) {}

  get(key: string): V | undefined {
    const hit = this.map.get(key);
    if (!hit) return undefined;
    this.map.delete(key);
    this.map.set(key, hit);
    return hit.value;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  set(key: string, value: V): void {
    this.delete(key);
    const cost = Math.max(0, this.cost(value));
    this.map.set(key, { value, cost });
    this.total += cost;
    for (const [k, v] of this.map) {
      if (this.total <= this.budget || k === key) break;
      this.map.delete(k);
      this.total -= v.cost;
    }
  }

  delete(key: string): void {
    const hit = this.map.get(key);
    if (!hit) return;
    this.map.delete(key);
    this.total -= hit.cost;
  }

  clear(): void {
    this.map.clear();
    this.total = 0;
  }

  get size(): number {
    return this.map.size;
  }
}

export class LatestFetcher<V> {
  private wanted: string | null = null;
  private inFlight: string | null = null;
  private readonly errors = new Map<string, Error>();
  private generation = 0;

  /**
   * `fetch(key)` asks for a key's value (null: the request went stale, nothing to store);
   * `onSettled(key)` is called after each answer or error, to redraw if the key is still wanted.
   */
  constructor(
    private readonly fetch: (key: string) => Promise<V | null>,
    private readonly onSettled: (key: string) => void,
    readonly cache: LruCache<V>,
  ) {}

  /**
   * Want `key` now (null: nothing). Returns the cached value when there is one. Wanting a key anew
   * (after wanting another) retries it if it failed before.
   */
  want(key: string | null): V | undefined {
    if (key !== this.wanted && key !== null) this.errors.delete(key);
    this.wanted = key;
    if (key === null) return undefined;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    this.pump();
    return undefined;
  }

  /** The error of the last failed fetch of `key`, if any (cleared when it is asked again). */
  error(key: string): Error | undefined {
    return this.errors.get(key);
  }

  /** Forget a failed key so that wanting it again retries. */
  retry(key: string): void {
    this.errors.delete(key);
    if (this.wanted === key) this.pump();
  }

  /** Drop the cache and errors (the text changed); an answer already on its way is ignored. */
  reset(): void {
    this.generation++;
    this.cache.clear();
    this.errors.clear();
    this.inFlight = null;
    this.wanted = null;
  }

  private pump(): void {
    const key = this.wanted;
    if (key === null || this.inFlight !== null || this.cache.has(key) || this.errors.has(key)) return;
    this.inFlight = key;
    const generation = this.generation;
    const settle = (): void => {
      if (generation !== this.generation) return;
      this.inFlight = null;
      try {
        this.onSettled(key);
      } finally {
        this.pump();
      }
    };
    let promise: Promise<V | null>;
    try {
      promise = this.fetch(key);
    } catch (e) {
      promise = Promise.reject(e);
    }
    promise.then(
      (value) => {
        if (generation !== this.generation) return;
        if (value !== null) this.cache.set(key, value);
        // A request made stale from outside (dispose) is not asked again until wanted anew.
        else if (this.wanted === key) this.wanted = null;
        settle();
      },
      (e: unknown) => {
        if (generation !== this.generation) return;
        this.errors.set(key, e instanceof Error ? e : new Error(String(e)));
        settle();
      },
    );
  }
}
