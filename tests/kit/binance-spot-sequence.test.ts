import { describe, expect, test } from "bun:test";
import { SpotDepthSequencer } from "../../src/connectors/kit/sequence/binance-spot.ts";
import { seededRandom as random } from "../support/random.ts";

describe("SpotDepthSequencer verdicts (Binance spot: U/u on a REST snapshot, no pu)", () => {
  test("before a snapshot every event is buffered", () => {
    const sequencer = new SpotDepthSequencer();
    expect(sequencer.check(1, 5)).toBe("no_snapshot");
    expect(sequencer.position).toBe(-1);
  });

  test("events inside the snapshot are stale; the first applied may straddle it or start right after it", () => {
    const straddle = new SpotDepthSequencer();
    straddle.begin(100);
    expect(straddle.check(90, 95)).toBe("stale");
    expect(straddle.check(96, 100)).toBe("stale"); // u == lastUpdateId: wholly inside the snapshot
    expect(straddle.synced).toBe(false);
    expect(straddle.check(98, 104)).toBe("apply"); // U <= 101 <= u
    expect(straddle.position).toBe(104);

    const after = new SpotDepthSequencer();
    after.begin(100);
    expect(after.check(101, 103)).toBe("apply"); // the snapshot fell between two events
    expect(after.check(104, 104)).toBe("apply");
  });

  test("a first event starting past the snapshot means the snapshot is too old, not a gap", () => {
    const sequencer = new SpotDepthSequencer();
    sequencer.begin(100);
    expect(sequencer.check(102, 110)).toBe("snapshot_too_old");
    expect(sequencer.synced).toBe(false);
  });

  test("once synced: U past u + 1 is a gap; an overlapping event applies; a repeat is stale; ids going back are backwards", () => {
    const sequencer = new SpotDepthSequencer();
    sequencer.begin(100);
    expect(sequencer.check(101, 110)).toBe("apply");
    expect(sequencer.check(111, 120)).toBe("apply");
    expect(sequencer.check(101, 110)).toBe("stale"); // re-sent frame
    expect(sequencer.check(115, 125)).toBe("apply"); // overlap: quantities are absolute, the documented rule applies it
    expect(sequencer.check(50, 60)).toBe("backwards"); // never applied, below the position
    expect(sequencer.check(127, 130)).toBe("gap"); // 126 missing
    expect(sequencer.position).toBe(125);
  });

  test("a too-high id does not silence the book: what follows is backwards, and a new snapshot starts over", () => {
    const sequencer = new SpotDepthSequencer();
    sequencer.begin(100);
    expect(sequencer.check(101, 1_000_000)).toBe("apply");
    expect(sequencer.check(102, 103)).toBe("backwards");
    sequencer.begin(103);
    expect(sequencer.check(104, 105)).toBe("apply");
  });
});

/**
 * A true book changed one level per update id, cut into events of consecutive ids as the stream sends
 * them (each event holds the final quantity of every level it touched); snapshots of the true book at
 * arbitrary ids, taken while events are buffered. The local book follows only the sequencer's verdicts.
 */
describe("SpotDepthSequencer rebuilds the true book", () => {
  interface Event {
    readonly U: number;
    readonly u: number;
    readonly levels: ReadonlyMap<number, number>;
  }

  function history(seed: number, updates: number): { states: Map<number, number>[]; events: Event[] } {
    const rand = random(seed);
    const states: Map<number, number>[] = [new Map()];
    const events: Event[] = [];
    let book = new Map<number, number>();
    let id = 0;
    while (id < updates) {
      const size = 1 + Math.floor(rand() * 5);
      const touched = new Map<number, number>();
      const U = id + 1;
      for (let k = 0; k < size; k++) {
        id++;
        const price = 100 + Math.floor(rand() * 30);
        const amount = rand() < 0.3 ? 0 : Math.round(rand() * 1000) / 10;
        book = new Map(book);
        if (amount === 0) book.delete(price);
        else book.set(price, amount);
        touched.set(price, amount);
        states[id] = book;
      }
      events.push({ U, u: id, levels: touched });
    }
    return { states, events };
  }

  function apply(book: Map<number, number>, event: Event): void {
    for (const [price, amount] of event.levels) {
      if (amount === 0) book.delete(price);
      else book.set(price, amount);
    }
  }

  test("from snapshots at random ids (inside an event or between two), through duplicates, drops and resyncs", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rand = random(seed * 7919);
      const { states, events } = history(seed, 400);
      const sequencer = new SpotDepthSequencer();
      let local = new Map<number, number>();
      let buffered: Event[] = [];
      let resyncs = 0;
      let gaps = 0;
      let compared = 0;
      // A snapshot is taken after a few events have been buffered, at any id up to the last one seen.
      const takeSnapshot = (): void => {
        const lastSeen = buffered.at(-1)?.u ?? 0;
        const snapshotId = Math.max(0, lastSeen - Math.floor(rand() * 6));
        sequencer.begin(snapshotId);
        local = new Map(states[snapshotId]);
        resyncs++;
        const pending = buffered;
        buffered = [];
        for (const event of pending) feed(event);
      };
      const feed = (event: Event): void => {
        const verdict = sequencer.check(event.U, event.u);
        if (verdict === "no_snapshot") buffered.push(event);
        else if (verdict === "apply") apply(local, event);
        else if (verdict === "gap" || verdict === "backwards" || verdict === "snapshot_too_old") {
          if (verdict === "gap") gaps++;
          sequencer.reset();
          buffered = [event];
        }
      };
      for (let i = 0; i < events.length; i++) {
        const event = events[i]!;
        if (rand() < 0.02 && sequencer.synced) continue; // lost on the wire
        feed(event);
        if (rand() < 0.05 && i > 0) feed(events[i - 1]!); // re-sent
        if (sequencer.position < 0 && buffered.length >= 3) takeSnapshot();
        if (sequencer.synced && i % 10 === 0) {
          expect([...local].sort()).toEqual([...states[sequencer.position]!].sort());
          compared++;
        }
      }
      if (sequencer.position < 0) takeSnapshot();
      const last = events.at(-1)!.u;
      if (sequencer.position === last) expect([...local].sort()).toEqual([...states[last]!].sort());
      expect(resyncs).toBeGreaterThanOrEqual(gaps + 1);
      expect(compared).toBeGreaterThan(5);
    }
  });
});
