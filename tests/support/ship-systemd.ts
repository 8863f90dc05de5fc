/**
 * systemd, as far as the shipping tests need it: unit files and EnvironmentFiles read with systemd's rules
 * (the subset our unit uses; anything else is an error, so a new directive cannot slip past the tests),
 * and a launcher that starts a binary exactly as the unit's ExecStart would under a temporary root: the
 * unit's environment files in order, its working directory and state directory, its stop signal and
 * TimeoutStopSec followed by SIGKILL.
 *
 * Rules from systemd.unit(5), systemd.exec(5), systemd.service(5), systemd.kill(5), systemd.time(7).
 */
import type { Subprocess } from "bun";
import { chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** section → key → assignments in file order (an empty assignment resets the list, as systemd does). */
export type Unit = ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>;

export function parseUnit(text: string): Unit {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) return;
    const header = /^\[([A-Za-z]+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1]!, current);
      return;
    }
    const assignment = /^([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)$/.exec(line);
    if (!assignment || !current) throw new Error(`unit line ${index + 1} is not Key=value in a section: ${line}`);
    const [, key, value] = assignment;
    const list = current.get(key!) ?? [];
    if (value === "") list.length = 0;
    else list.push(value!);
    current.set(key!, list);
  });
  return sections;
}

export function unitValues(unit: Unit, section: string, key: string): readonly string[] {
  return unit.get(section)?.get(key) ?? [];
}

/** The last assignment of a single-valued setting. */
export function unitValue(unit: Unit, section: string, key: string): string | undefined {
  return unitValues(unit, section, key).at(-1);
}

/** The variables a unit's `Environment=` lines set (several assignments per line allowed), later lines winning. */
export function unitEnvironment(unit: Unit, expand: (value: string) => string = (value) => value): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const assignment of unitValues(unit, "Service", "Environment")) {
    Object.assign(environment, parseEnvironmentFile(expand(assignment).replace(/\s+(?=[A-Za-z_]+=)/g, "\n")));
  }
  return environment;
}

/** %i (the instance name) and %%; any other specifier is unexpected here and an error. */
export function expandSpecifiers(value: string, instance: string): string {
  return value.replace(/%(.)/g, (_, letter: string) => {
    if (letter === "i") return instance;
    if (letter === "%") return "%";
    throw new Error(`specifier %${letter} is not handled by the test launcher`);
  });
}

const TIME_UNITS: Record<string, number> = {
  "": 1, s: 1, sec: 1, second: 1, seconds: 1, ms: 0.001, msec: 0.001,
  m: 60, min: 60, minute: 60, minutes: 60, h: 3600, hr: 3600, hour: 3600, hours: 3600,
};

/** A systemd time span ("30", "30s", "1min 30s", "infinity") in seconds. */
export function parseTimeSpan(text: string): number {
  if (text.trim() === "infinity") return Number.POSITIVE_INFINITY;
  let total = 0;
  const pattern = /(\d+(?:\.\d+)?)\s*([a-z]*)/g;
  let matched = "";
  for (const match of text.matchAll(pattern)) {
    const factor = TIME_UNITS[match[2]!];
    if (factor === undefined) throw new Error(`time unit '${match[2]}' in '${text}'`);
    total += Number(match[1]) * factor;
    matched += match[0];
  }
  if (matched.replace(/\s/g, "") !== text.replace(/\s/g, "")) throw new Error(`not a time span: '${text}'`);
  return total;
}

/**
 * An EnvironmentFile: KEY=VALUE lines, '#' or ';' comment lines, optional single or double quotes
 * (double quotes understand backslash escapes), unquoted values trimmed.
 */
export function parseEnvironmentFile(text: string, name = "environment file"): Record<string, string> {
  const values: Record<string, string> = {};
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) return;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) throw new Error(`${name} line ${index + 1} is not KEY=VALUE: ${line}`);
    let value = match[2]!.trim();
    if (value.length >= 2 && value.startsWith("'") && value.endsWith("'")) value = value.slice(1, -1);
    else if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) {
      value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    }
    values[match[1]!] = value;
  });
  return values;
}

/** ExecStart= words: optional prefixes (-, @, :, +, !) dropped; words split on blanks, quotes grouped. */
export function splitCommandLine(text: string): string[] {
  const words: string[] = [];
  for (const match of text.replace(/^[-@:+!]+/, "").matchAll(/"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g)) {
    words.push(match[1] !== undefined ? match[1].replace(/\\(.)/g, "$1") : (match[2] ?? match[3]!));
  }
  return words;
}

export interface UnitLaunchOptions {
  /** The unit file as shipped (not rewritten). */
  readonly unitFile: string;
  readonly instance: string;
  /** Every absolute path in the unit is taken relative to this directory (what install.sh --root filled). */
  readonly root: string;
  /** The executable to run for the unit's ExecStart path, when it is not under `root`. */
  readonly executableOverride?: string;
}

export interface UnitProcess {
  readonly child: Subprocess<"ignore", "pipe", "pipe">;
  /** Working directory, inside the root. */
  readonly workingDirectory: string;
  /** The environment the process got. */
  readonly environment: Readonly<Record<string, string>>;
  /** Everything the process wrote to stdout and stderr so far (the journal). */
  journal(): string;
  /**
   * `systemctl stop`: the unit's KillSignal, then SIGKILL if the process outlives TimeoutStopSec.
   * Resolves with the exit code and whether SIGKILL was needed.
   */
  stop(): Promise<{ exitCode: number | null; signalCode: string | number | null; killedAfterTimeout: boolean }>;
}

/** Starts `ExecStart` the way systemd would, with every path of the unit mapped under `root`. */
export function startUnit(options: UnitLaunchOptions): UnitProcess {
  const unit = parseUnit(readFileSync(options.unitFile, "utf8"));
  const service = (key: string) => unitValue(unit, "Service", key);
  const inRoot = (path: string) => join(options.root, path);
  const expand = (value: string) => expandSpecifiers(value, options.instance);

  // StateDirectory= is created (and chowned) by systemd before the process starts.
  for (const entry of unitValues(unit, "Service", "StateDirectory")) {
    for (const name of expand(entry).split(/\s+/)) {
      const directory = inRoot(join("/var/lib", name));
      mkdirSync(directory, { recursive: true });
      chmodSync(directory, Number.parseInt(service("StateDirectoryMode") ?? "0755", 8));
    }
  }

  const environment: Record<string, string> = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    LANG: "C.UTF-8",
    INVOCATION_ID: "0123456789abcdef0123456789abcdef",
  };
  const user = service("User");
  if (user) {
    environment.USER = user;
    environment.LOGNAME = user;
    environment.HOME = inRoot(join("/var/lib", user));
    environment.SHELL = "/usr/sbin/nologin";
  }
  Object.assign(environment, unitEnvironment(unit, expand));
  for (const entry of unitValues(unit, "Service", "EnvironmentFile")) {
    const optional = entry.startsWith("-");
    const path = inRoot(expand(entry.replace(/^-/, "")));
    if (!existsSync(path)) {
      if (optional) continue;
      throw new Error(`EnvironmentFile ${path} is missing; systemd would refuse to start the unit`);
    }
    Object.assign(environment, parseEnvironmentFile(readFileSync(path, "utf8"), path));
  }

  const workingDirectoryEntry = service("WorkingDirectory");
  if (!workingDirectoryEntry) throw new Error("the unit sets no WorkingDirectory");
  const workingDirectory = inRoot(expand(workingDirectoryEntry.replace(/^-/, "")));
  const execStart = unitValues(unit, "Service", "ExecStart");
  if (execStart.length !== 1) throw new Error(`expected one ExecStart, found ${execStart.length}`);
  const [program, ...args] = splitCommandLine(expand(execStart[0]!));
  const executable = options.executableOverride ?? inRoot(program!);

  const child = Bun.spawn([executable, ...args], {
    cwd: workingDirectory,
    env: environment,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let journal = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) journal += decoder.decode(chunk, { stream: true });
  };
  const collected = Promise.all([collect(child.stdout), collect(child.stderr)]);

  const killSignal = (service("KillSignal") ?? "SIGTERM") as NodeJS.Signals;
  const stopTimeoutSeconds = parseTimeSpan(service("TimeoutStopSec") ?? "90s");
  return {
    child,
    workingDirectory,
    environment,
    journal: () => journal,
    async stop() {
      child.kill(killSignal);
      const outcome = { killedAfterTimeout: false };
      const timer = setTimeout(() => {
        outcome.killedAfterTimeout = true;
        child.kill("SIGKILL");
      }, stopTimeoutSeconds * 1000);
      await child.exited;
      clearTimeout(timer);
      await collected;
      return { exitCode: child.exitCode, signalCode: child.signalCode, killedAfterTimeout: outcome.killedAfterTimeout };
    },
  };
}
