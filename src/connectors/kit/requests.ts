/**
 * Requests sent on a connection and waiting for their answer, shared by every venue: subscribe and
 * unsubscribe requests, JSON-RPC calls. An answer is matched by the request's id; a request that stays
 * unanswered past the timeout means a broken session, and the venue decides what to do (reconnect).
 * Every request is forgotten with its connection (`clear` on open and close).
 */
export class PendingRequests<K, T> {
  private readonly entries = new Map<K, { readonly request: T; timer: ReturnType<typeof setTimeout> | undefined }>();

  /** `timeoutMs` undefined: requests wait for their answer as long as the connection lives. */
  constructor(
    private readonly timeoutMs: number | undefined,
    private readonly onTimeout: (key: K, request: T) => void = () => {},
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Registers a request. Its answer is timed from now, or from `sent` when it is queued (`queued`). */
  add(key: K, request: T, queued = false): void {
    this.entries.set(key, { request, timer: undefined });
    if (!queued) this.sent(key);
  }

  /** Starts timing the answer of a request registered while queued. */
  sent(key: K): void {
    const entry = this.entries.get(key);
    if (!entry || this.timeoutMs === undefined) return;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      if (this.entries.get(key) !== entry) return;
      this.entries.delete(key);
      this.onTimeout(key, entry.request);
    }, this.timeoutMs);
  }

  /** The request answered by `key`, no longer pending; undefined for an unknown id. */
  take(key: K): T | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    this.entries.delete(key);
    return entry.request;
  }

  clear(): void {
    for (const entry of this.entries.values()) clearTimeout(entry.timer);
    this.entries.clear();
  }
}
