/**
 * Book integrity policies for OKX, pure (they only see ids and level texts): the seqId/prevSeqId chain
 * and the CRC32 checksum of the top levels.
 */
import type { SequenceVerdict } from "./verdict.ts";

/** Levels per side the checksum covers. */
export const OKX_CHECKSUM_DEPTH = 25;

/** The verdicts this policy gives (kit/sequence/verdict.ts). */
export type SeqIdVerdict = Extract<SequenceVerdict, "apply" | "duplicate" | "stale" | "gap" | "backwards">;

/**
 * The seqId/prevSeqId chain of one book (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel):
 * an update applies when its prevSeqId equals the last applied seqId. That single rule accepts jumps of
 * more than one, the idle heartbeat (seqId == prevSeqId) and the reset after maintenance (seqId below
 * prevSeqId). After a REST snapshot (seqId S, taken between two pushes) the first update applies when
 * prevSeqId <= S < seqId, updates with seqId <= S are already in the snapshot; only `overlap` of them are
 * taken as such (the overlap between the REST cache and the stream), after that they are `backwards`:
 * a snapshot seqId that is too high must not silence the book.
 */
export class SeqIdChain {
  private last = Number.NaN;
  private lastPrev = Number.NaN;
  private bridging = false;
  private overlapLeft = 0;

  get seqId(): number {
    return this.last;
  }

  get started(): boolean {
    return !Number.isNaN(this.last);
  }

  /** From a snapshot; `overlap`: for a REST one, how many updates it may already hold. */
  start(seqId: number, fromRest: boolean, overlap = 0): void {
    this.last = seqId;
    this.lastPrev = Number.NaN;
    this.bridging = fromRest;
    this.overlapLeft = overlap;
  }

  reset(): void {
    this.last = Number.NaN;
    this.lastPrev = Number.NaN;
    this.bridging = false;
  }

  /** Judges one update and, when it applies, advances the chain. */
  next(prevSeqId: number, seqId: number): SeqIdVerdict {
    if (!this.started) return "gap";
    if (prevSeqId === this.last) return this.advance(prevSeqId, seqId);
    if (this.bridging) {
      if (seqId <= this.last) return this.overlapLeft-- > 0 ? "stale" : "backwards";
      if (prevSeqId < this.last) return this.advance(prevSeqId, seqId);
      return "gap";
    }
    // The exact message applied last, sent again: harmless.
    if (seqId === this.last && prevSeqId === this.lastPrev) return "duplicate";
    return "gap";
  }

  private advance(prevSeqId: number, seqId: number): SeqIdVerdict {
    this.lastPrev = prevSeqId;
    this.last = seqId;
    this.bridging = false;
    return "apply";
  }
}

/**
 * OKX's legacy book checksum: CRC32 of `bid1px:bid1sz:ask1px:ask1sz:bid2px:...` over the top 25 levels
 * (a shorter side simply runs out), strings exactly as received, as a signed 32-bit integer.
 * Levels are [price text, size text] pairs, best first.
 */
export function okxChecksum(bids: readonly (readonly string[])[], asks: readonly (readonly string[])[]): number {
  const parts: string[] = [];
  const depth = OKX_CHECKSUM_DEPTH;
  for (let i = 0; i < depth; i++) {
    const bid = bids[i];
    const ask = asks[i];
    if (bid) parts.push(bid[0]!, bid[1]!);
    if (ask) parts.push(ask[0]!, ask[1]!);
    if (!bid && !ask) break;
  }
  return Bun.hash.crc32(parts.join(":")) | 0;
}

// ─── Wire shapes ───────────────────────────────────────────────────────────────────────────────────
