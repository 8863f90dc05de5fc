import { describe, expect, test } from "bun:test";
import { BybitBookSequence, type BybitBookVerdict } from "../../src/connectors/kit/sequence/bybit.ts";
import { seededRandom } from "../support/random.ts";

describe("BybitBookSequence, in-band snapshots (orderbook.{depth})", () => {
  test("deltas before the first snapshot wait; then u must grow by one", () => {
    const book = new BybitBookSequence();
    expect(book.delta(10, 500)).toBe("awaiting_snapshot");
    expect(book.snapshot(10)).toBe("snapshot");
    expect(book.delta(11, 505)).toBe("apply");
    expect(book.delta(12, 509)).toBe("apply");
    expect(book.position).toBe(12);
  });

  test("a skipped u is a gap, a repeat is a duplicate, an older u never applied is backwards", () => {
    const book = new BybitBookSequence();
    book.snapshot(100);
    expect(book.delta(101, 1)).toBe("apply");
    expect(book.delta(101, 1)).toBe("duplicate");
    expect(book.delta(50, 1)).toBe("backwards");
    expect(book.delta(103, 1)).toBe("gap");
    expect(book.position).toBe(101);
  });

  test("u = 1 in a snapshot after data is the service restart: reset to it and say so", () => {
    const book = new BybitBookSequence();
    book.snapshot(5000);
    book.delta(5001, 1);
    expect(book.snapshot(1)).toBe("restart_snapshot");
    expect(book.delta(2, 1)).toBe("apply");
    // The first snapshot of a fresh subscription with u = 1 is an ordinary one.
    expect(new BybitBookSequence().snapshot(1)).toBe("snapshot");
  });

  test("a snapshot re-sent mid-stream resets the chain to its u", () => {
    const book = new BybitBookSequence();
    book.snapshot(10);
    book.delta(11, 1);
    expect(book.snapshot(40)).toBe("snapshot");
    expect(book.delta(41, 1)).toBe("apply");
    expect(book.delta(12, 1)).toBe("backwards");
  });
});

describe("BybitBookSequence, full book on a REST snapshot (orderbook.full)", () => {
  test("deltas older than the snapshot are dropped, the one at its seq and u is covered, the next applies", () => {
    const book = new BybitBookSequence();
    expect(book.delta(7, 100)).toBe("awaiting_snapshot");
    book.begin(9, 120);
    expect(book.delta(8, 110)).toBe("duplicate");
    expect(book.delta(9, 120)).toBe("covered");
    expect(book.delta(10, 125)).toBe("apply");
    expect(book.delta(11, 130)).toBe("apply");
  });

  test("the snapshot between two deltas bridges to the next u", () => {
    const book = new BybitBookSequence();
    book.begin(9, 120);
    expect(book.delta(10, 121)).toBe("apply");
  });

  test("same seq and another u, or a later delta not continuing u: fetch the snapshot again", () => {
    const mismatch = new BybitBookSequence();
    mismatch.begin(9, 120);
    expect(mismatch.delta(8, 120)).toBe("snapshot_too_old");
    const behind = new BybitBookSequence();
    behind.begin(9, 120);
    expect(behind.delta(14, 140)).toBe("snapshot_too_old");
  });

  test("a delta with u = 1 re-initialises the book (restart, tick change, delisting)", () => {
    const book = new BybitBookSequence();
    book.begin(9, 120);
    book.delta(10, 121);
    expect(book.delta(1, 200)).toBe("restart");
    const bridging = new BybitBookSequence();
    bridging.begin(9, 120);
    expect(bridging.delta(1, 200)).toBe("restart");
  });
});

/**
 * A true book changed per update id `u` (several levels per message, seq growing by random steps); the
 * local book follows only the verdicts, through lost and repeated messages, restarts of the numbering and
 * resyncs. After every applied delta it equals the true book at that u.
 */
describe("BybitBookSequence rebuilds the true book", () => {
  interface Message {
    readonly u: number;
    readonly seq: number;
    readonly levels: ReadonlyMap<number, number>;
    readonly state: ReadonlyMap<number, number>;
  }

  function stream(seed: number, count: number): Message[] {
    const rand = seededRandom(seed);
    const out: Message[] = [];
    let book = new Map<number, number>();
    let u = 0;
    let seq = 1000;
    for (let i = 0; i < count; i++) {
      u = rand() < 0.01 ? 1 : u + 1; // the service restarts: numbering starts over
      seq += 1 + Math.floor(rand() * 4);
      const levels = new Map<number, number>();
      book = new Map(book);
      for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) {
        const price = 100 + Math.floor(rand() * 40);
        const amount = rand() < 0.3 ? 0 : Math.round(rand() * 100) / 10;
        levels.set(price, amount);
        if (amount === 0) book.delete(price);
        else book.set(price, amount);
      }
      out.push({ u, seq, levels, state: book });
    }
    return out;
  }

  const sorted = (book: ReadonlyMap<number, number>): number[][] => [...book].sort((a, b) => a[0]! - b[0]!);

  test("full book: REST snapshots taken at random messages, lost and repeated deltas", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rand = seededRandom(seed * 31);
      const messages = stream(seed, 500);
      const book = new BybitBookSequence();
      let local = new Map<number, number>();
      let buffered: Message[] = [];
      let applied = 0;
      const restart = (): void => {
        book.reset();
        buffered = [];
      };
      const feed = (message: Message): void => {
        const verdict: BybitBookVerdict = book.delta(message.u, message.seq);
        if (verdict === "awaiting_snapshot") buffered.push(message);
        else if (verdict === "apply") {
          for (const [price, amount] of message.levels) amount === 0 ? local.delete(price) : local.set(price, amount);
          expect(sorted(local)).toEqual(sorted(message.state));
          applied++;
        } else if (verdict === "gap" || verdict === "backwards" || verdict === "restart" || verdict === "snapshot_too_old") {
          restart();
          buffered.push(message);
        }
      };
      for (let i = 0; i < messages.length; i++) {
        const message = messages[i]!;
        if (rand() < 0.02) continue; // lost
        feed(message);
        if (rand() < 0.05 && i > 0) feed(messages[i - 1]!); // repeated
        if (Number.isNaN(book.position) && buffered.length >= 3) {
          // The REST snapshot is the book at one of the messages seen so far (the cache may lag a little).
          const at = messages[Math.max(0, i - Math.floor(rand() * 3))]!;
          book.begin(at.u, at.seq);
          local = new Map(at.state);
          const pending = buffered;
          buffered = [];
          for (const held of pending) feed(held);
        }
      }
      expect(applied).toBeGreaterThan(100);
    }
  });

  test("in-band: the venue's snapshot after subscribing and after each restart; a gap resubscribes", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rand = seededRandom(seed * 17);
      const messages = stream(seed, 500);
      const book = new BybitBookSequence();
      let local = new Map<number, number>();
      let applied = 0;
      let needSnapshot = true;
      for (let i = 0; i < messages.length; i++) {
        const message = messages[i]!;
        // The venue sends a snapshot first after (re)subscribing, and with u = 1 when its service restarts.
        if (needSnapshot || message.u === 1) {
          const verdict = book.snapshot(message.u);
          expect(verdict === "snapshot" || verdict === "restart_snapshot").toBe(true);
          local = new Map(message.state);
          needSnapshot = false;
          continue;
        }
        if (rand() < 0.02) continue; // lost
        const verdict = book.delta(message.u, message.seq);
        if (verdict === "apply") {
          for (const [price, amount] of message.levels) amount === 0 ? local.delete(price) : local.set(price, amount);
          expect(sorted(local)).toEqual(sorted(message.state));
          applied++;
          if (rand() < 0.05) expect(book.delta(message.u, message.seq)).toBe("duplicate");
        } else {
          expect(verdict).toBe("gap");
          book.reset();
          needSnapshot = true;
        }
      }
      expect(applied).toBeGreaterThan(100);
    }
  });
});
