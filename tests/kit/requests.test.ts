import { describe, expect, test } from "bun:test";
import { PendingRequests } from "../../src/connectors/kit/requests.ts";

describe("PendingRequests", () => {
  test("an answered request is taken once; an unknown id is undefined", () => {
    const pending = new PendingRequests<number, string>(undefined);
    pending.add(1, "SUBSCRIBE a");
    expect(pending.take(1)).toBe("SUBSCRIBE a");
    expect(pending.take(1)).toBeUndefined();
    expect(pending.take(2)).toBeUndefined();
  });

  test("a request unanswered for the timeout is reported once and forgotten; an answered one never", async () => {
    const timedOut: Array<[number, string]> = [];
    const pending = new PendingRequests<number, string>(30, (id, request) => timedOut.push([id, request]));
    pending.add(1, "answered");
    pending.add(2, "lost");
    pending.add(3, "queued", true);
    expect(pending.take(1)).toBe("answered");
    await Bun.sleep(80);
    expect(timedOut).toEqual([[2, "lost"]]);
    expect(pending.size).toBe(1);
    // A queued request is timed from when it is sent.
    pending.sent(3);
    await Bun.sleep(80);
    expect(timedOut).toEqual([[2, "lost"], [3, "queued"]]);
  });

  test("clear forgets every request and its timer", async () => {
    const timedOut: number[] = [];
    const pending = new PendingRequests<number, string>(20, (id) => timedOut.push(id));
    pending.add(1, "a");
    pending.add(2, "b");
    pending.clear();
    await Bun.sleep(60);
    expect(timedOut).toEqual([]);
    expect(pending.size).toBe(0);
  });
});
