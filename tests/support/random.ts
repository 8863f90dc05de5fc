/** mulberry32: a small, fast, seeded PRNG, so randomized markets and inputs are the same on every run. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Mutates one character (insert, delete or replace) with characters that matter to JSON (the scanner tests). */
export function mutate(random: () => number, text: string): string {
  const alphabet = '0123456789.-+eE",[]{}: \\a';
  const at = Math.floor(random() * text.length);
  const char = alphabet[Math.floor(random() * alphabet.length)]!;
  const kind = random();
  if (kind < 0.33) return text.slice(0, at) + char + text.slice(at);
  if (kind < 0.66) return text.slice(0, at) + text.slice(at + 1);
  return text.slice(0, at) + char + text.slice(at + 1);
}
