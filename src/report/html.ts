/**
 * The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched. A timeline
 * per stream shows at a glance where rows were received (green), the gaps (red; unclean stops purple),
 * the silences (no rows: the grey background) and files still open (amber); hovering a mark shows its
 * times (SVG <title>). The tables below repeat every figure and list every gap.
 */
import { SILENCE_MICROS, type Interval, type Report, type StreamReport } from "./coverage.ts";
import { formatCount, formatCovered, formatDuration, formatRate, formatTime, holesOf } from "./format.ts";

/** Timeline width in pixels; fixed so the page reads the same in every browser and in a screenshot. */
export const TIMELINE_WIDTH = 960;
const TIMELINE_HEIGHT = 18;
const AXIS_HEIGHT = 22;

export const COLOURS = {
  rows: "#2ca02c",
  gap: "#d62728",
  unclean: "#9467bd",
  open: "#ff9f1c",
  none: "#e3e6e8",
} as const;

export function renderHtml(report: Report, generatedAt: number): string {
  const title = `xtrader coverage: ${report.root}`;
  const range =
    report.from === undefined || report.to === undefined
      ? "no rows and no gap rows yet"
      : `${formatTime(report.from)} to ${formatTime(report.to)} UTC (${formatDuration(report.to - report.from)})`;
  const open = [...report.streams.flatMap((stream) => stream.openFiles), ...report.openGapFiles].sort((a, b) => a.openedAt - b.openedAt);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Coverage report</h1>
<p class="meta"><code>${escape(report.root)}</code> · ${formatCount(report.files)} finished file(s) · ${escape(range)} · receive times · generated ${escape(formatTime(generatedAt))} UTC</p>
${legend()}
${report.from === undefined || report.to === undefined ? "" : timelines(report, report.from, report.to)}
${summary(report)}
${holes(report)}
${open.length === 0 ? "" : `<h2>Files still open</h2>
<p>Being written, or left by a run that was killed (the next start recovers them). Their rows are not counted above${report.openGapFiles.length > 0 ? `; ${report.openGapFiles.length} of them hold gap rows, which are not listed until they are closed` : ""}.</p>
<table><thead><tr><th>file</th><th>opened (UTC)</th></tr></thead><tbody>
${open.map((file) => `<tr><td><code>${escape(file.path)}</code></td><td>${escape(formatTime(file.openedAt))}</td></tr>`).join("\n")}
</tbody></table>`}
${report.unreadable.length === 0 ? "" : `<h2>Unreadable</h2>
<p>Not counted above.</p>
<table><thead><tr><th>path</th><th>reason</th></tr></thead><tbody>
${report.unreadable.map((problem) => `<tr><td><code>${escape(problem.path)}</code></td><td class="detail">${escape(problem.reason)}</td></tr>`).join("\n")}
</tbody></table>`}
</body>
</html>
`;
}

const STYLE = `
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px; color: #1d2327; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #50575e; margin: 0 0 12px; }
.legend span { display: inline-block; margin-right: 18px; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 5px; vertical-align: -1px; }
.timelines { display: grid; grid-template-columns: max-content ${TIMELINE_WIDTH}px max-content; column-gap: 10px; row-gap: 4px; align-items: center; margin-top: 12px; }
.timelines .label { white-space: nowrap; font-size: 13px; }
.timelines .label b { font-weight: 600; }
.timelines .share { font-size: 12px; color: #50575e; text-align: right; }
svg { display: block; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; fill: #50575e; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #dcdfe2; text-align: left; vertical-align: top; white-space: nowrap; }
td.detail { white-space: normal; }
th { background: #f6f7f7; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.stream td { background: #f6f7f7; font-weight: 600; }
.reason { white-space: nowrap; }
.reason i { display: inline-block; width: 10px; height: 10px; margin-right: 5px; vertical-align: -1px; }
`;

function legend(): string {
  const item = (colour: string, text: string) => `<span><i style="background:${colour}"></i>${text}</span>`;
  return `<p class="legend">${item(COLOURS.rows, "rows (paler: during part of that time)")}${item(COLOURS.gap, "gap (from the last row before to the first after)")}${item(COLOURS.unclean, "unclean stop")}${item(COLOURS.none, "no rows")}${item(COLOURS.open, "file still open")}</p>`;
}

function timelines(report: Report, from: number, to: number): string {
  // A single instant still gets a visible width.
  const span = Math.max(to - from, 1);
  const x = (time: number) => ((time - from) / span) * TIMELINE_WIDTH;
  const rows = report.streams.map((stream) => {
    const label = `<div class="label"><b>${escape(stream.exchange)}</b> ${escape(stream.symbol)} · ${escape(stream.stream)}</div>`;
    const share = stream.first !== undefined && stream.last !== undefined && stream.last > stream.first
      ? `${((100 * stream.covered) / (stream.last - stream.first)).toFixed(1)}%`
      : "";
    return `${label}\n${timeline(stream, from, span, x)}\n<div class="share">${share}</div>`;
  });
  return `<div class="timelines">
<div></div>${axis(from, to, x)}<div></div>
${rows.join("\n")}
</div>`;
}

function timeline(stream: StreamReport, from: number, span: number, x: (time: number) => number): string {
  const marks: string[] = [`<rect width="${TIMELINE_WIDTH}" height="${TIMELINE_HEIGHT}" fill="${COLOURS.none}"/>`, ...coverageMarks(stream.runs, from, span)];
  for (const file of stream.openFiles) {
    // To the end of the timeline (its rows are not known yet); at least 3 px, inside the drawing.
    const w = Math.max(TIMELINE_WIDTH - x(file.openedAt), 3);
    marks.push(rect(TIMELINE_WIDTH - w, w, COLOURS.open, `file still open since ${formatTime(file.openedAt)}: ${file.path}`));
  }
  for (const hole of holesOf(stream)) {
    if (hole.reason === "silence") continue; // the background shows it
    const colour = hole.reason === "unclean_stop" ? COLOURS.unclean : COLOURS.gap;
    const x0 = x(hole.interval?.from ?? hole.at);
    // At least 2 px: a one-second reconnect in a month is still seen.
    const w = Math.max(x(hole.interval?.to ?? hole.at) - x0, 2);
    marks.push(rect(Math.min(x0, TIMELINE_WIDTH - w), w, colour, `${hole.reason} at ${formatTime(hole.at, true)}, ${hole.length}: ${hole.detail}`));
  }
  return `<svg width="${TIMELINE_WIDTH}" height="${TIMELINE_HEIGHT}" viewBox="0 0 ${TIMELINE_WIDTH} ${TIMELINE_HEIGHT}" shape-rendering="crispEdges" role="img" aria-label="${escape(`${stream.exchange} ${stream.symbol} ${stream.stream}`)}">${marks.join("")}</svg>`;
}

function rect(x0: number, width: number, colour: string, title: string): string {
  return `<rect x="${x0.toFixed(2)}" width="${width.toFixed(2)}" height="${TIMELINE_HEIGHT}" fill="${colour}"><title>${escape(title)}</title></rect>`;
}

/**
 * The runs as each pixel's share of time with rows, drawn in four strengths (full green when rows cover at
 * least 90 % of the pixel's time): at a month's scale a pixel is 45 minutes, and a quiet stream's
 * 5-minute silences would otherwise vanish into solid green. Neighbouring pixels of one strength are one
 * rectangle. A run shorter than a quarter pixel (one lone row group) still shows, faintly.
 */
function coverageMarks(runs: readonly Interval[], from: number, span: number): string[] {
  const pixel = span / TIMELINE_WIDTH;
  const shares = new Float64Array(TIMELINE_WIDTH);
  for (const run of runs) {
    const end = Math.max(run.to, run.from + pixel / 4);
    for (let p = Math.max(0, Math.floor((run.from - from) / pixel)); p < TIMELINE_WIDTH && from + p * pixel < end; p++) {
      shares[p]! += (Math.min(end, from + (p + 1) * pixel) - Math.max(run.from, from + p * pixel)) / pixel;
    }
  }
  const strength = (share: number) => (share >= 0.9 ? 1 : share >= 0.6 ? 0.75 : share >= 0.35 ? 0.5 : share > 0 ? 0.25 : 0);
  const marks: string[] = [];
  let start = 0;
  let covered = 0;
  for (let p = 0; p <= TIMELINE_WIDTH; p++) {
    if (p < TIMELINE_WIDTH && strength(shares[p]!) === strength(shares[start]!)) {
      covered += Math.min(shares[p]!, 1);
      continue;
    }
    const level = strength(shares[start]!);
    if (level > 0) {
      const title = `${Math.round((100 * covered) / (p - start))}% of ${formatTime(from + start * pixel)} to ${formatTime(from + p * pixel)} has rows`;
      marks.push(`<rect x="${start}" width="${p - start}" height="${TIMELINE_HEIGHT}" fill="${COLOURS.rows}"${level < 1 ? ` fill-opacity="${level}"` : ""}><title>${escape(title)}</title></rect>`);
    }
    start = p;
    covered = p < TIMELINE_WIDTH ? Math.min(shares[p]!, 1) : 0;
  }
  return marks;
}

const MINUTE = 60_000_000;
const TICK_STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, 60 * MINUTE, 180 * MINUTE, 360 * MINUTE, 720 * MINUTE, 1440 * MINUTE, 2880 * MINUTE, 10_080 * MINUTE];

/** UTC ticks at a round step, at most ~8 of them, labelled with the date when the step is a day or more. */
function axis(from: number, to: number, x: (time: number) => number): string {
  const step = TICK_STEPS.find((candidate) => (to - from) / candidate <= 8) ?? TICK_STEPS.at(-1)!;
  const ticks: string[] = [];
  for (let time = Math.ceil(from / step) * step; time <= to; time += step) {
    const position = x(time);
    const text = step >= 1440 * MINUTE ? formatTime(time).slice(0, 10) : formatTime(time).slice(5, 16);
    // Keep the label inside the drawing at both ends.
    const anchor = position < 40 ? "start" : position > TIMELINE_WIDTH - 40 ? "end" : "middle";
    ticks.push(`<line x1="${position.toFixed(2)}" x2="${position.toFixed(2)}" y1="${AXIS_HEIGHT - 6}" y2="${AXIS_HEIGHT}" stroke="#8c8f94"/><text x="${position.toFixed(2)}" y="${AXIS_HEIGHT - 9}" text-anchor="${anchor}">${text}</text>`);
  }
  return `<svg width="${TIMELINE_WIDTH}" height="${AXIS_HEIGHT}" viewBox="0 0 ${TIMELINE_WIDTH} ${AXIS_HEIGHT}"><line x1="0" x2="${TIMELINE_WIDTH}" y1="${AXIS_HEIGHT - 0.5}" y2="${AXIS_HEIGHT - 0.5}" stroke="#8c8f94"/>${ticks.join("")}</svg>`;
}

function summary(report: Report): string {
  if (report.streams.length === 0) return "";
  const rows = report.streams.map(
    (stream) => `<tr><td>${escape(stream.exchange)}</td><td>${escape(stream.symbol)}</td><td>${escape(stream.stream)}</td>` +
      `<td>${stream.first === undefined ? "-" : escape(formatTime(stream.first))}</td><td>${stream.last === undefined ? "-" : escape(formatTime(stream.last))}</td>` +
      `<td class="n">${escape(formatCovered(stream))}</td><td class="n">${formatCount(stream.rows)}</td><td class="n">${formatRate(stream.rowsPerMinute)}</td>` +
      `<td class="n">${stream.gaps.length}</td><td class="n">${stream.uncleanStops}</td><td class="n">${stream.silences.length}</td><td class="n">${stream.openFiles.length}</td><td class="n">${formatCount(stream.files)}</td></tr>`,
  );
  return `<h2>Streams</h2>
<table><thead><tr><th>exchange</th><th>symbol</th><th>stream</th><th>first row (UTC)</th><th>last row (UTC)</th><th>covered</th><th>rows</th><th>rows/min</th><th>gaps</th><th>unclean stops</th><th>silences</th><th>open files</th><th>files</th></tr></thead><tbody>
${rows.join("\n")}
</tbody></table>`;
}

function holes(report: Report): string {
  const sections: string[] = [];
  for (const stream of report.streams) {
    const list = holesOf(stream);
    if (list.length === 0) continue;
    sections.push(`<tr class="stream"><td colspan="4">${escape(`${stream.exchange} ${stream.symbol} ${stream.stream}`)}</td></tr>`);
    for (const hole of list) {
      const colour = hole.reason === "silence" ? COLOURS.none : hole.reason === "unclean_stop" ? COLOURS.unclean : COLOURS.gap;
      sections.push(
        `<tr><td>${escape(formatTime(hole.at, true))}</td><td class="reason"><i style="background:${colour}"></i>${escape(hole.reason)}</td><td class="n">${escape(hole.length)}</td><td class="detail">${escape(hole.detail)}</td></tr>`,
      );
    }
  }
  if (sections.length === 0) return "<h2>Gaps and silences</h2>\n<p>None.</p>";
  return `<h2>Gaps and silences</h2>
<p>Length: from the stream's last row before the gap to its first row after it. A silence is ${formatDuration(SILENCE_MICROS)} or more without a row and without a gap row.</p>
<table><thead><tr><th>noticed (UTC)</th><th>reason</th><th>length</th><th>detail</th></tr></thead><tbody>
${sections.join("\n")}
</tbody></table>`;
}

const ESCAPES: Readonly<Record<string, string>> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text from the data or the file system, safe in element content and attribute values. */
export function escape(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ESCAPES[char]!);
}
