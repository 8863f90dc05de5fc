/**
 * Bounded REST bodies. `response.text()` takes whatever the server sends: a 150,000-level "snapshot" was
 * accepted whole. Here a body is refused as soon as it is known to be too large: by its Content-Length
 * before reading, else by counting the bytes as they stream in (the count is of decoded bytes, so a
 * compressed body cannot slip past it).
 */

/** Bound of REST answers other than book snapshots (instrument lists: Binance's and OKX's are a few MB). */
export const MAX_REST_BODY_BYTES = 32 << 20;

/**
 * Bytes a book snapshot of `levels` levels a side may take: a level is two or four short quoted numbers
 * (`["65000.10","1.234"],` ~25 bytes, OKX's `["41006.8","0.6","0","1"],` ~40), so 128 per level and side,
 * plus room for the envelope, holds any honest answer of that depth with margin.
 */
export function snapshotBodyBytes(levels: number): number {
  return 2 * levels * 128 + (16 << 10);
}

export type BoundedText = { readonly text: string } | { readonly tooLarge: string };

/** The body as UTF-8 text, or why it was refused (the rest of it is not read). */
export async function boundedText(response: Response, maxBytes: number): Promise<BoundedText> {
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    return { tooLarge: `body of ${declared} bytes (Content-Length) over the ${maxBytes}-byte bound` };
  }
  const reader = response.body?.getReader();
  if (!reader) return { text: "" };
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return { tooLarge: `body over the ${maxBytes}-byte bound (more than ${total} bytes)` };
    }
    chunks.push(value);
  }
  return { text: Buffer.concat(chunks, total).toString("utf8") };
}
