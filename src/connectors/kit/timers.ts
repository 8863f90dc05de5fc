/**
 * Timers of one owner (a connector, a pool, a connection), cleared together when it stops or its
 * connection goes: no delayed action outlives what it belonged to.
 */
export class Timers {
  private readonly pending = new Set<ReturnType<typeof setTimeout>>();

  /** Runs `action` after `ms`, unless cleared first. */
  later(ms: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      action();
    }, ms);
    this.pending.add(timer);
  }

  clear(): void {
    for (const timer of this.pending) clearTimeout(timer);
    this.pending.clear();
  }
}
