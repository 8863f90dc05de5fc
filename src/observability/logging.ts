/**
 * Log output: `--log-format text` (default, human-readable lines) or `json` (LOG_FORMAT=json),
 * one JSON object per line for log shippers:
 *   {"time":"2026-01-02T03:04:05.678Z","level":"warn","message":"...","component":"xtrader:OKX_SWAP",...fields}
 * `level` is error|warn|info|debug|trace; `component` is the logger's tag; fields come from plain objects
 * passed to the logger (`log.warn("gap", { subscription })`) and from Error arguments (`error`, `stack`).
 * In json mode every line goes to stdout, so stdout is nothing but JSON (stderr keeps only the one-line
 * startup errors of exit code 2).
 *
 * Text is one line per entry, always (a multi-line message or an error's stack joined with ` | `): journald
 * makes every line an entry, so a blank line or a stack spread over lines would be entries of their own. Colours and consola's decoration only where the line goes to a
 * terminal and NO_COLOR is not set (https://no-color.org); elsewhere `[warn] [xtrader:OKX_SWAP] message`.
 *
 * Secrets are masked in both formats as a last line of defence (callers must not log them in the first
 * place): every value of a secret-looking environment variable (…SECRET, …PASSWORD, …TOKEN, …API_KEY…)
 * and the password/token values inside QDB_CLIENT_CONF are replaced by [REDACTED] wherever they appear,
 * and fields with secret-looking names are redacted whatever their value.
 */
import { createConsola, type ConsolaReporter, type LogObject } from "consola";
import type { Config } from "../core/config.ts";
import type { Logger } from "../core/log.ts";

export const REDACTED = "[REDACTED]";
export const SECRET_NAME = /secret|passw(or)?d|passphrase|token|api[_-]?key|private[_-]?key|credential|authorization|signature/i;
/** Shorter values would mask ordinary words; no real credential is this short. */
const MIN_SECRET_LENGTH = 6;

/** The secret values of this run: from secret-looking variables of the (merged) environment. */
export function secretsOf(config: Pick<Config, "env">): string[] {
  const secrets = new Set<string>();
  for (const [name, value] of Object.entries(config.env)) {
    if (value && SECRET_NAME.test(name)) secrets.add(value.trim());
  }
  // QuestDB client configuration string: `http::addr=host:9000;username=admin;password=...;`
  for (const part of (config.env.QDB_CLIENT_CONF ?? "").split(";")) {
    const equals = part.indexOf("=");
    if (equals > 0 && SECRET_NAME.test(part.slice(0, equals))) secrets.add(part.slice(equals + 1).trim());
  }
  return [...secrets].filter((secret) => secret.length >= MIN_SECRET_LENGTH).sort((a, b) => b.length - a.length);
}

export function maskSecrets(text: string, secrets: readonly string[]): string {
  let masked = text;
  for (const secret of secrets) if (masked.includes(secret)) masked = masked.replaceAll(secret, REDACTED);
  return masked;
}

/** A copy of a log argument with secrets masked (strings, errors, plain objects and arrays, 4 levels deep). */
function maskValue(value: unknown, secrets: readonly string[], depth = 0): unknown {
  if (typeof value === "string") return maskSecrets(value, secrets);
  if (value instanceof Error) {
    const copy = new Error(maskSecrets(value.message, secrets));
    copy.name = value.name;
    copy.stack = value.stack === undefined ? undefined : maskSecrets(value.stack, secrets);
    return copy;
  }
  if (depth >= 4 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((item) => maskValue(item, secrets, depth + 1));
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    out[key] = SECRET_NAME.test(key) ? REDACTED : maskValue(item, secrets, depth + 1);
  }
  return out;
}

function levelName(level: number): "error" | "warn" | "info" | "debug" | "trace" {
  if (level <= 0) return "error";
  if (level === 1) return "warn";
  if (level <= 3) return "info";
  return level === 4 ? "debug" : "trace";
}

const RESERVED = new Set(["time", "level", "message", "component"]);
/** Keys consola itself puts on a log object; anything else was passed by the caller as a field. */
const CONSOLA_KEYS = new Set(["args", "type", "tag", "level", "date", "message", "additional"]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

/** One JSON line (without the newline) for a consola log object. */
export function jsonLogLine(logObj: LogObject, secrets: readonly string[]): string {
  const words: string[] = [];
  const fields: Record<string, unknown> = {};
  const addField = (key: string, value: unknown) => {
    fields[RESERVED.has(key) ? `field_${key}` : key] = value;
  };
  for (const [key, value] of Object.entries(logObj)) if (!CONSOLA_KEYS.has(key)) addField(key, value);
  for (const arg of logObj.args ?? []) {
    if (arg instanceof Error) {
      words.push(arg.message);
      addField("error", arg.name);
      if (arg.stack) addField("stack", arg.stack);
    } else if (isPlainObject(arg)) {
      for (const [key, value] of Object.entries(arg)) addField(key, value);
    } else {
      words.push(typeof arg === "string" ? arg : String(arg));
    }
  }
  const masked = maskValue(fields, secrets) as Record<string, unknown>;
  const entry = {
    time: (logObj.date ?? new Date()).toISOString(),
    level: levelName(logObj.level),
    message: maskSecrets(words.join(" "), secrets),
    ...(logObj.tag ? { component: logObj.tag } : {}),
    ...masked,
  };
  try {
    return JSON.stringify(entry);
  } catch {
    // A field that cannot be serialized (a cycle, a BigInt) must not lose the line.
    return JSON.stringify({ time: entry.time, level: entry.level, message: entry.message, component: logObj.tag });
  }
}

/** Colour and decoration for `stream`: only a terminal, and not when NO_COLOR is set (https://no-color.org). */
export function colourWanted(stream: { readonly isTTY?: boolean }, env: Record<string, string | undefined> = process.env): boolean {
  return stream.isTTY === true && !env.NO_COLOR;
}

/** Lines of a multi-line entry (an error's stack, a multi-line message) joined into one. */
function oneLine(text: string): string {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .join(" | ");
}

interface TextReporter {
  formatLogObj(logObj: LogObject, options: Record<string, unknown>): string;
}

/** consola's own formatter: fancy (colours, icons, badges) or basic (`[type] [tag] message`). */
function reporterOf(fancy: boolean): TextReporter {
  const options = { fancy } as Parameters<typeof createConsola>[0];
  return createConsola(options).options.reporters[0] as unknown as TextReporter;
}

/** A writable stream as consola's reporters see it. */
export interface LogStream {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

export interface LoggingOptions {
  readonly format: "text" | "json";
  readonly secrets: readonly string[];
  /** Where JSON lines go (default stdout). */
  readonly write?: (line: string) => void;
  /** Text format: the environment that may set NO_COLOR (default process.env). */
  readonly env?: Record<string, string | undefined>;
}

/**
 * Sets the output format of `logger` (and of every logger later derived from it with withTag) and
 * masks secrets. Call once, before deriving child loggers.
 */
export function configureLogging(logger: Logger, options: LoggingOptions): void {
  const { secrets } = options;
  if (options.format === "json") {
    const write = options.write ?? ((line: string) => void process.stdout.write(line));
    logger.setReporters([{ log: (logObj) => write(`${jsonLogLine(logObj, secrets)}\n`) }]);
    return;
  }
  const env = options.env ?? process.env;
  const fancy = reporterOf(true);
  const plain = reporterOf(false);
  const reporter: ConsolaReporter = {
    log: (logObj, context) => {
      // consola's routing: warnings and errors (levels 0 and 1) to the logger's stderr, the rest to stdout.
      const stream: LogStream = (logObj.level < 2 ? context.options.stderr : context.options.stdout) ?? process.stdout;
      const masked = secrets.length === 0 ? logObj : { ...logObj, args: logObj.args.map((arg) => maskValue(arg, secrets)) };
      // consola's fancy reporter wraps warnings and errors in blank lines: oneLine drops them.
      const text = oneLine(
        colourWanted(stream, env) ? fancy.formatLogObj(masked, { columns: stream.columns ?? 0 }) : plain.formatLogObj(masked, { columns: 0 }),
      );
      stream.write(`${text}\n`);
    },
  };
  logger.setReporters([reporter]);
}
