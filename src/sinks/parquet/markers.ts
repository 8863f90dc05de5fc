/**
 * The streams owed an `unclean_stop` gap row, kept in `DIR/.unclean-stop.pending` until those rows are
 * durable (docs/sinks/parquet.md, "The loss is marked in the data").
 *
 * A killed run's leftovers are the only trace that it died, and recovery removes them. If the restart is
 * killed too before the gap rows it owes reach a journal (within its first flush interval), nothing would
 * mark those streams any more. So recovery records them here (fsync'ed) before it changes anything, every
 * start reads them back, and the sink removes them only once their gap rows are on disk.
 */
import { open, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { STREAMS } from "../../core/events.ts";
import type { InterruptedStream } from "../../core/sink.ts";
import { errorCode, syncDirectory, writeAll } from "./part-file.ts";

export const PENDING_MARKERS_FILE = ".unclean-stop.pending";

export const streamKey = (stream: InterruptedStream): string => `${stream.stream}:${stream.exchange}@${stream.symbol}`;

/**
 * The streams a previous start recorded and did not mark durably, of the `exchanges` this build knows; a
 * file that does not parse is an error.
 */
export async function readPendingMarkers(root: string, exchanges: ReadonlySet<string>): Promise<InterruptedStream[]> {
  let text: string;
  try {
    text = await readFile(join(root, PENDING_MARKERS_FILE), "utf8");
  } catch (error) {
    if (errorCode(error) === "ENOENT") return [];
    throw error;
  }
  const parsed = JSON.parse(text) as { streams?: unknown };
  if (!Array.isArray(parsed.streams)) throw new Error(`${PENDING_MARKERS_FILE} has no list of streams`);
  return parsed.streams.filter((stream) => isStream(stream, exchanges)).map(({ exchange, symbol, stream }) => ({ exchange, symbol, stream }));
}

/** Replaces the record with `streams` (removes it when empty); durable when this resolves. */
export async function writePendingMarkers(root: string, streams: readonly InterruptedStream[]): Promise<void> {
  const path = join(root, PENDING_MARKERS_FILE);
  if (streams.length === 0) {
    try {
      await unlink(path);
    } catch (error) {
      if (errorCode(error) === "ENOENT") return;
      throw error;
    }
  } else {
    const next = `${path}.next`;
    const handle = await open(next, "w");
    try {
      await writeAll(handle, new TextEncoder().encode(`${JSON.stringify({ streams })}\n`), 0);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(next, path);
  }
  await syncDirectory(root);
}

function isStream(value: unknown, exchanges: ReadonlySet<string>): value is InterruptedStream {
  const { exchange, symbol, stream } = (value ?? {}) as Record<string, unknown>;
  return (
    typeof exchange === "string" &&
    exchanges.has(exchange) &&
    typeof symbol === "string" &&
    symbol !== "" &&
    (STREAMS as readonly unknown[]).includes(stream)
  );
}
