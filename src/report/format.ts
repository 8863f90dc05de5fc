/** How the report writes times, lengths and counts, the same in the terminal and the page. */
import type { GapEntry, Interval, StreamReport } from "./coverage.ts";

/** UTC `YYYY-MM-DD HH:MM:SS`, with `.mmm` when `milliseconds`. */
export function formatTime(micros: number, milliseconds = false): string {
  const iso = new Date(Math.floor(micros / 1000)).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, milliseconds ? 23 : 19)}`;
}

export function formatDuration(micros: number): string {
  if (micros < 1000) return `${Math.round(micros)} µs`;
  if (micros < 1_000_000) return `${Math.round(micros / 1000)} ms`;
  const seconds = micros / 1_000_000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.floor(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${pad(whole % 60)}s`;
  if (whole < 86_400) return `${Math.floor(whole / 3600)}h ${pad(Math.floor(whole / 60) % 60)}m`;
  return `${Math.floor(whole / 86_400)}d ${pad(Math.floor(whole / 3600) % 24)}h`;
}

const pad = (value: number): string => String(value).padStart(2, "0");

/** 1234567 → 1,234,567 (no locale: the same on every machine). */
export function formatCount(value: number): string {
  const digits = String(Math.round(value));
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function formatRate(value: number | undefined): string {
  if (value === undefined) return "-";
  if (value < 10) return value.toFixed(2);
  if (value < 100) return value.toFixed(1);
  return formatCount(value);
}

/** Covered time with its share of the time from the first row to the last. */
export function formatCovered(stream: StreamReport): string {
  if (stream.first === undefined || stream.last === undefined) return "-";
  const span = stream.last - stream.first;
  if (span <= 0) return formatDuration(stream.covered);
  return `${formatDuration(stream.covered)} (${((100 * stream.covered) / span).toFixed(1)}%)`;
}

/** A gap's length: from the last row before it to the first row after it. */
export function gapLength(gap: GapEntry): string {
  if (gap.unreadable) return "unknown (the rows around it are unreadable)";
  if (gap.previous === undefined && gap.next === undefined) return "unknown (no rows around it)";
  if (gap.previous === undefined) return "unknown (no earlier row)";
  if (gap.next === undefined) return "unknown (no later row)";
  return formatDuration(gap.next - gap.previous);
}

export const SILENCE_DETAIL = "no rows and no gap row: the stream was quiet, or the collector was not running";

/** A stream's gaps and silences in time order, as the lists of both outputs show them. */
export interface Hole {
  readonly at: number;
  readonly reason: string;
  readonly length: string;
  readonly detail: string;
  readonly interval: Interval | undefined;
}

export function holesOf(stream: StreamReport): Hole[] {
  const holes: Hole[] = stream.gaps.map((gap) => ({
    at: gap.at,
    reason: gap.reason,
    length: gapLength(gap),
    detail: gap.detail,
    interval: gap.previous !== undefined && gap.next !== undefined ? { from: gap.previous, to: gap.next } : undefined,
  }));
  for (const silence of stream.silences) {
    holes.push({ at: silence.from, reason: "silence", length: formatDuration(silence.to - silence.from), detail: SILENCE_DETAIL, interval: silence });
  }
  return holes.sort((a, b) => a.at - b.at);
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/** Text from the data (a venue's close reason) made safe for one terminal line: control characters escaped. */
export function printable(text: string): string {
  return text.replace(CONTROL, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
