/**
 * `.env` loading, identical under `bun` and in the compiled binary (whose own dotenv autoload build.ts
 * turns off, so there is exactly one rule): `.env` in the working directory is read if present, and a
 * variable already in the real environment always wins over the file.
 *
 * Format: `KEY=value` lines; `export KEY=value` accepted; `#` comments; single quotes are literal, double
 * quotes understand \n \t \" \\; an unquoted value ends at ` #`. A quote must close on its line, and
 * only a comment may follow it: anything else is refused with the line's number (exit 2).
 *
 * The file is read only if it is a regular file of at most DOTENV_MAX_BYTES of UTF-8 text. It is opened
 * without blocking and checked on the open descriptor: a FIFO would block the start forever, a link to
 * /dev/zero would be read until memory runs out.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, type Stats } from "node:fs";
import { join } from "node:path";
import { UserError } from "../core/errors.ts";

/** Largest `.env` read: a settings file is a few hundred bytes; anything near this is not one. */
export const DOTENV_MAX_BYTES = 1 << 20;

export type Environment = Readonly<Record<string, string | undefined>>;

export function parseDotenv(text: string, fileName = ".env"): Record<string, string> {
  const values: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  lines.forEach((rawLine, index) => {
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) return;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) {
      // Only what stands before the first separator is quoted: the rest may be a secret typed with ':' or ' '.
      const name = /^[^\s=:]*/.exec(line)![0].slice(0, 40);
      throw new UserError(`${fileName} line ${index + 1} is not KEY=value (it starts with '${name}')`);
    }
    const key = match[1]!;
    let value = match[2]!;
    const where = `${fileName} line ${index + 1}`;
    if (value.startsWith("'") || value.startsWith('"')) {
      const quote = value[0]!;
      const end = quote === "'" ? value.indexOf("'", 1) : closingQuote(value);
      if (end < 0) throw new UserError(`${where}: the ${quote} quote of ${key} is not closed on its line`);
      const rest = value.slice(end + 1).trim();
      if (rest !== "" && !rest.startsWith("#")) {
        throw new UserError(`${where}: unexpected text after the quoted value of ${key}; only a # comment may follow it`);
      }
      value = value.slice(1, end);
      if (quote === '"') value = value.replace(/\\([nt"\\])/g, (_, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : c));
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
  const text = readDotenv(path);
  if (text === undefined) return { ...realEnvironment };
  const fromFile = parseDotenv(text, path);
  const merged: Record<string, string | undefined> = { ...fromFile };
  for (const [key, value] of Object.entries(realEnvironment)) if (value !== undefined) merged[key] = value;
  return merged;
}

/** The text of `path`, or undefined when there is no such file. */
function readDotenv(path: string): string | undefined {
  let descriptor: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    descriptor = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !isLink(path)) return undefined;
    throw new UserError(`cannot read ${path}: ${code === "ENOENT" ? "it is a link to nothing" : (code ?? String(error))}`);
  }
  try {
    const stats = fstatSync(descriptor);
    if (!stats.isFile()) {
      throw new UserError(`${path} is ${kindOf(stats)}, not a regular file; .env must be a regular file of at most ${DOTENV_MAX_BYTES} bytes`);
    }
    // One byte more than allowed tells a file at the limit from a longer one (it may grow while read).
    const bytes = new Uint8Array(Math.min(stats.size, DOTENV_MAX_BYTES) + 1);
    let length = 0;
    for (let read = -1; read !== 0 && length < bytes.length; length += read) {
      read = readSync(descriptor, bytes, length, bytes.length - length, null);
    }
    if (length > DOTENV_MAX_BYTES) {
      throw new UserError(`${path} is larger than ${DOTENV_MAX_BYTES} bytes; .env holds KEY=value settings, a few hundred bytes`);
    }
    const content = bytes.subarray(0, length);
    if (content.includes(0)) throw new UserError(`${path} holds NUL bytes; .env must be text`);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(content);
    } catch {
      throw new UserError(`${path} is not UTF-8 text`);
    }
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new UserError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  } finally {
    closeSync(descriptor);
  }
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isCharacterDevice()) return "a character device";
  if (stats.isBlockDevice()) return "a block device";
  if (stats.isSocket()) return "a socket";
  return "not a regular file";
}
