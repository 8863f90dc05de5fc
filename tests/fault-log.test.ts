/**
 * FaultLog: a repeating fault is one line when its episode starts, a summary at most every `summaryMs`,
 * and one closing line with the count when it has been quiet for `quietMs`.
 */
import { describe, expect, test } from "bun:test";
import { FaultLog } from "../src/core/fault-log.ts";
import type { Logger } from "../src/core/log.ts";

function capture() {
  const lines: { level: string; text: string }[] = [];
  const log = {
    warn: (text: string) => lines.push({ level: "warn", text }),
    error: (text: string) => lines.push({ level: "error", text }),
  } as unknown as Logger;
  return { log, lines };
}

describe("FaultLog", () => {
  test("1,000 repeats in one episode make a first line, periodic summaries and an end line", () => {
    const { log, lines } = capture();
    let now = 0;
    const faults = new FaultLog(log, { summaryMs: 60_000, quietMs: 10_000, now: () => now });
    // 1,000 occurrences, one every 150 ms: 150 s of one episode.
    for (let i = 0; i < 1000; i++) {
      faults.report("disk", `write refused (EACCES) #${i}`, "error");
      now += 150;
    }
    // The first occurrence at once, then one summary per 60 s: at 60 s and 120 s.
    expect(lines.map((line) => line.level)).toEqual(["error", "error", "error"]);
    expect(lines[0]!.text).toBe("write refused (EACCES) #0");
    expect(lines[1]!.text).toContain("400 more in the last 60 s");
    expect(lines[2]!.text).toContain("400 more in the last 60 s; 801 since 120 s ago");
    now += 10_000;
    faults.sweep();
    expect(lines).toHaveLength(4);
    expect(lines[3]!.text).toBe("write refused (EACCES) #999: episode over, 1000 occurrence(s) in 150 s");
    expect(faults.active("disk")).toBe(false);
  });

  test("keys are independent; a fault after a quiet period starts a new episode", () => {
    const { log, lines } = capture();
    let now = 0;
    const faults = new FaultLog(log, { quietMs: 1_000, now: () => now });
    faults.report("a", "queue full for A");
    faults.report("b", "queue full for B");
    faults.report("a", "queue full for A", "warn", 5);
    expect(lines.map((line) => line.text)).toEqual(["queue full for A", "queue full for B"]);
    now += 1_500;
    faults.report("a", "queue full for A again");
    // The old episode of A ends (6 occurrences), a new one starts; B's single occurrence needs no end line.
    expect(lines.slice(2).map((line) => line.text)).toEqual([
      "queue full for A: episode over, 6 occurrence(s) in 0.0 s",
      "queue full for A again",
    ]);
    faults.flush();
    expect(lines).toHaveLength(4);
  });

  test("a lone occurrence reported with a count says so", () => {
    const { log, lines } = capture();
    const faults = new FaultLog(log, { now: () => 0 });
    faults.report("rows", "rows rejected", "warn", 12);
    expect(lines[0]!.text).toBe("rows rejected (12 at once)");
    faults.flush();
    expect(lines[1]!.text).toBe("rows rejected: episode over, 12 occurrence(s) in 0.0 s");
  });
});
