import { describe, expect, test } from "bun:test";
import { SlidingWindow, TokenBucket } from "../../src/connectors/kit/rate.ts";

describe("TokenBucket", () => {
  test("a burst at once, then one token per 1/perSecond; a refused take takes nothing", () => {
    let now = 0;
    const bucket = new TokenBucket(3, 2, () => now);
    expect([bucket.take(), bucket.take(), bucket.take()]).toEqual([0, 0, 0]);
    expect(bucket.take()).toBe(500);
    expect(bucket.take()).toBe(500);
    now = 250;
    expect(bucket.take()).toBe(250);
    now = 500;
    expect(bucket.take()).toBe(0);
    // Idle time refills up to the burst, never beyond.
    now = 60_000;
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([0, 0, 0, 500]);
  });

  test("reserve books slots in order, evenly spaced with a burst of 1", async () => {
    const bucket = new TokenBucket(1, 1000 / 30);
    const started = performance.now();
    const done: number[] = [];
    await Promise.all([0, 1, 2].map((i) => bucket.reserve().then(() => done.push(i))));
    expect(done).toEqual([0, 1, 2]);
    // The third slot is two spacings after the first.
    expect(performance.now() - started).toBeGreaterThanOrEqual(59);
  });
});

describe("SlidingWindow", () => {
  test("at most `count` takes in any window; a take that does not fit takes nothing; clear starts afresh", () => {
    let now = 0;
    const window = new SlidingWindow(3, 1_000, () => now);
    expect(window.take(2)).toBe(true);
    expect(window.take(2)).toBe(false);
    expect(window.take()).toBe(true);
    now = 999;
    expect(window.take()).toBe(false);
    now = 1_001;
    expect(window.take(3)).toBe(true);
    window.clear();
    expect(window.take(3)).toBe(true);
  });
});
