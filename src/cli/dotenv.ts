/**
 * `.env` loading, identical under `bun` and in the compiled binary (whose own dotenv autoload build.ts
 * turns off, so there is exactly one rule): `.env` in the working directory is read if present, and a
 * variable already in the real environment always wins over the file.
 *
 * Format: `KEY=value` lines; `export KEY=value` accepted; `#` comments; single quotes are literal, double
 * quotes understand \n \t \" \\; an unquoted value ends at ` #`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../core/errors.ts";

export type Environment = Readonly<Record<string, string | undefined>>;

export function parseDotenv(text: string, fileName = ".env"): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  lines.forEach((rawLine, index) => {
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) return;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) {
      throw new UserError(`${fileName} line ${index + 1} is not KEY=value: '${line.slice(0, 40)}'`);
    }
    const key = match[1]!;
    let value = match[2]!;
    if (value.startsWith("'")) {
      const end = value.indexOf("'", 1);
      value = end > 0 ? value.slice(1, end) : value.slice(1);
    } else if (value.startsWith('"')) {
      const end = closingQuote(value);
      value = value
        .slice(1, end > 0 ? end : undefined)
        .replace(/\\([nt"\\])/g, (_, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : c));
    } else {
      const comment = value.search(/\s#/);
      value = (comment >= 0 ? value.slice(0, comment) : value).trim();
    }
    values[key] = value;
  });
  return values;
}

function closingQuote(value: string): number {
  for (let i = 1; i < value.length; i++) {
    if (value[i] === "\\") i++;
    else if (value[i] === '"') return i;
  }
  return -1;
}

/** The real environment over `.env` from `directory` (default: the working directory). */
export function loadEnvironment(
  realEnvironment: Environment = process.env,
  directory: string = process.cwd(),
): Environment {
  const path = join(directory, ".env");
  if (!existsSync(path)) return { ...realEnvironment };
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new UserError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const fromFile = parseDotenv(text, path);
  const merged: Record<string, string | undefined> = { ...fromFile };
  for (const [key, value] of Object.entries(realEnvironment)) if (value !== undefined) merged[key] = value;
  return merged;
}
