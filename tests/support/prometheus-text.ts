/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests that scrape
 * /metrics: it reads every line (HELP, TYPE, samples with escaped label values and special floats),
 * rejects what Prometheus would reject (unknown syntax, a sample before its TYPE, duplicate series,
 * histograms whose buckets are not cumulative or disagree with _count), and answers lookups by name
 * and labels. Spec: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly type: MetricType;
  help: string | undefined;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, line: string): number {
  switch (text) {
    case "+Inf":
    case "Inf":
      return Number.POSITIVE_INFINITY;
    case "-Inf":
      return Number.NEGATIVE_INFINITY;
    case "NaN":
    case "Nan":
      return Number.NaN;
  }
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad sample value '${text}' in: ${line}`);
  return Number(text);
}

/** Parses `{a="x",b="y\"z"}` starting at `start` (the brace); returns labels and the index after `}`. */
function parseLabels(line: string, start: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    while (line[i] === " ") i++;
    if (line[i] === "}") return { labels, end: i + 1 };
    const nameStart = i;
    while (i < line.length && /[a-zA-Z0-9_]/.test(line[i]!)) i++;
    const name = line.slice(nameStart, i);
    if (!LABEL_NAME.test(name)) throw new Error(`bad label name '${name}' in: ${line}`);
    if (name in labels) throw new Error(`duplicate label '${name}' in: ${line}`);
    if (line[i] !== "=" || line[i + 1] !== '"') throw new Error(`expected ="..." after label '${name}' in: ${line}`);
    i += 2;
    let value = "";
    for (;;) {
      const char = line[i];
      if (char === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (char === '"') break;
      if (char === "\\") {
        const next = line[i + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else throw new Error(`bad escape '\\${next}' in: ${line}`);
        i += 2;
        continue;
      }
      value += char;
      i++;
    }
    labels[name] = value;
    i++;
    if (line[i] === ",") i++;
    else if (line[i] !== "}") throw new Error(`expected , or } after label '${name}' in: ${line}`);
  }
}

function familyOf(sampleName: string, families: Map<string, Family>): Family | undefined {
  const exact = families.get(sampleName);
  if (exact) return exact;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sampleName.endsWith(suffix)) continue;
    const family = families.get(sampleName.slice(0, -suffix.length));
    if (family && (family.type === "histogram" || (family.type === "summary" && suffix !== "_bucket"))) return family;
  }
  return undefined;
}

function seriesKey(name: string, labels: Readonly<Record<string, string>>): string {
  return `${name}{${Object.keys(labels)
    .sort()
    .map((key) => `${key}=${JSON.stringify(labels[key])}`)
    .join(",")}}`;
}

export class Exposition {
  constructor(readonly families: ReadonlyMap<string, Family>) {}

  family(name: string): Family {
    const family = this.families.get(name);
    if (!family) throw new Error(`metric family ${name} is not exposed`);
    return family;
  }

  /** Samples of `name` (a family or a _bucket/_sum/_count series) whose labels include `labels`. */
  samples(name: string, labels: Readonly<Record<string, string>> = {}): Sample[] {
    const family = familyOf(name, this.families as Map<string, Family>);
    if (!family) throw new Error(`metric ${name} is not exposed`);
    return family.samples.filter(
      (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
    );
  }

  /** The one sample of `name` matching `labels`; throws unless exactly one matches. */
  value(name: string, labels: Readonly<Record<string, string>> = {}): number {
    const found = this.samples(name, labels);
    if (found.length !== 1) throw new Error(`${found.length} samples of ${seriesKey(name, labels)}, expected 1`);
    return found[0]!.value;
  }

  /** Cumulative bucket counts of a histogram series, by upper bound (as written, e.g. "0.001", "+Inf"). */
  buckets(name: string, labels: Readonly<Record<string, string>> = {}): Map<string, number> {
    const out = new Map<string, number>();
    for (const sample of this.samples(`${name}_bucket`, labels)) out.set(sample.labels.le!, sample.value);
    return out;
  }
}

export function parseExposition(text: string): Exposition {
  if (text !== "" && !text.endsWith("\n")) throw new Error("exposition does not end with a newline");
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const match = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (!match) continue; // an ordinary comment
      const [, keyword, name, rest = ""] = match;
      if (!METRIC_NAME.test(name!)) throw new Error(`bad metric name in: ${line}`);
      if (keyword === "TYPE") {
        if (!TYPES.has(rest.trim() as MetricType)) throw new Error(`unknown type in: ${line}`);
        if (families.get(name!)?.samples.length) throw new Error(`TYPE after samples of ${name}`);
        if (families.has(name!) && families.get(name!)!.type !== "untyped") throw new Error(`second TYPE for ${name}`);
        families.set(name!, { name: name!, type: rest.trim() as MetricType, help: families.get(name!)?.help, samples: [] });
      } else {
        const family = families.get(name!) ?? { name: name!, type: "untyped" as MetricType, help: undefined, samples: [] };
        if (family.help !== undefined) throw new Error(`second HELP for ${name}`);
        family.help = rest.replaceAll("\\n", "\n").replaceAll("\\\\", "\\");
        families.set(name!, family);
      }
      continue;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) throw new Error(`bad sample line: ${line}`);
    const name = nameMatch[0];
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) {
      const parsed = parseLabels(line, name.length);
      labels = parsed.labels;
      rest = line.slice(parsed.end);
    }
    const parts = rest.trim().split(/\s+/);
    if (!rest.startsWith(" ") || parts.length < 1 || parts.length > 2) throw new Error(`bad sample line: ${line}`);
    const value = parseValue(parts[0]!, line);
    const family = familyOf(name, families);
    if (!family) throw new Error(`sample ${name} has no TYPE line before it`);
    const key = seriesKey(name, labels);
    if (seen.has(key)) throw new Error(`duplicate series ${key}`);
    seen.add(key);
    if (family.type === "counter" && !(value >= 0)) throw new Error(`counter ${key} is ${value}`);
    family.samples.push({ name, labels, value });
  }
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return new Exposition(families);
}

/** Buckets non-decreasing in `le`, ending with +Inf equal to _count, and a _sum per series. */
function checkHistogram(family: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = seriesKey("", rest);
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (sample.name.endsWith("_bucket")) {
      if (le === undefined) throw new Error(`${family.name} bucket without le`);
      entry.buckets.push([parseValue(le, le), sample.value]);
    } else if (sample.name.endsWith("_count")) entry.count = sample.value;
    else if (sample.name.endsWith("_sum")) entry.sum = sample.value;
  }
  for (const [key, entry] of series) {
    entry.buckets.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < entry.buckets.length; i++) {
      if (entry.buckets[i]![1] < entry.buckets[i - 1]![1]) throw new Error(`${family.name}${key} buckets are not cumulative`);
    }
    const last = entry.buckets.at(-1);
    if (!last || last[0] !== Number.POSITIVE_INFINITY) throw new Error(`${family.name}${key} has no +Inf bucket`);
    if (entry.count !== last[1]) throw new Error(`${family.name}${key}: +Inf bucket ${last[1]} != _count ${entry.count}`);
    if (entry.sum === undefined) throw new Error(`${family.name}${key} has no _sum`);
  }
}
