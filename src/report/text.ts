/** The report as aligned plain text for a terminal (no colour codes, so it pipes and mails as it is). */
import type { Report } from "./coverage.ts";
import { formatCount, formatCovered, formatRate, formatTime, holesOf, printable } from "./format.ts";

const HEADERS = ["EXCHANGE", "SYMBOL", "STREAM", "FIRST", "LAST", "COVERED", "ROWS", "ROWS/MIN", "GAPS", "UNCLEAN STOPS", "SILENCES", "OPEN FILES"];
/** Columns aligned to the right (numbers). */
const RIGHT = new Set(["ROWS", "ROWS/MIN", "GAPS", "UNCLEAN STOPS", "SILENCES", "OPEN FILES"]);

export function renderText(report: Report): string {
  const lines: string[] = [];
  lines.push(`Coverage of ${printable(report.root)} (UTC receive times)`);
  if (report.from === undefined || report.to === undefined) {
    lines.push(`${formatCount(report.files)} finished file(s); no rows and no gap rows yet.`);
  } else {
    lines.push(`${formatCount(report.files)} finished file(s), ${formatTime(report.from)} to ${formatTime(report.to)}`);
  }

  if (report.streams.length > 0) {
    const rows = report.streams.map((stream) => [
      printable(stream.exchange),
      printable(stream.symbol),
      printable(stream.stream),
      stream.first === undefined ? "-" : formatTime(stream.first),
      stream.last === undefined ? "-" : formatTime(stream.last),
      formatCovered(stream),
      formatCount(stream.rows),
      formatRate(stream.rowsPerMinute),
      String(stream.gaps.length),
      String(stream.uncleanStops),
      String(stream.silences.length),
      String(stream.openFiles.length),
    ]);
    lines.push("", ...table(HEADERS, rows));
  }

  const withHoles = report.streams.filter((stream) => stream.gaps.length > 0 || stream.silences.length > 0);
  if (withHoles.length > 0) {
    lines.push("", "Gaps and silences (length: from the last row before to the first row after)");
    // One table for every stream, so the columns line up down the whole list.
    const perStream = withHoles.map((stream) => holesOf(stream).map((hole) => [formatTime(hole.at, true), hole.reason, hole.length, printable(hole.detail)]));
    const aligned = table(undefined, perStream.flat());
    let next = 0;
    withHoles.forEach((stream, i) => {
      lines.push(`  ${printable(stream.exchange)} ${printable(stream.symbol)} ${printable(stream.stream)}`);
      for (const line of aligned.slice(next, (next += perStream[i]!.length))) lines.push(`    ${line}`);
    });
  }

  const open = [...report.streams.flatMap((stream) => stream.openFiles), ...report.openGapFiles];
  if (open.length > 0) {
    lines.push("", "Files still open (being written, or left by a run that was killed: the next start recovers them; their rows are not counted above)");
    for (const file of open.sort((a, b) => a.openedAt - b.openedAt)) lines.push(`  ${printable(file.path)}  opened ${formatTime(file.openedAt)}`);
  }
  if (report.openGapFiles.length > 0) {
    lines.push(`  (${report.openGapFiles.length} of them hold gap rows, which this report cannot list until they are closed)`);
  }

  if (report.unreadable.length > 0) {
    lines.push("", "Unreadable (not counted above)");
    for (const problem of report.unreadable) lines.push(`  ${printable(problem.path)}: ${printable(problem.reason)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** Rows padded to their column's width, two spaces apart; trailing spaces trimmed. */
function table(headers: readonly string[] | undefined, rows: readonly string[][]): string[] {
  const all = headers ? [headers as string[], ...rows] : rows;
  const widths: number[] = [];
  for (const row of all) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, width(cell))));
  return all.map((row) =>
    row
      .map((cell, i) => {
        const padding = " ".repeat(widths[i]! - width(cell));
        return headers && RIGHT.has(headers[i]!) ? padding + cell : cell + padding;
      })
      .join("  ")
      .trimEnd(),
  );
}

/** Display width: code points (the report's own text is ASCII but for µ; symbols are ASCII). */
const width = (text: string): number => [...text].length;
