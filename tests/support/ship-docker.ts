/**
 * The Dockerfile without a container engine (none runs here or in CI): its instructions parsed, the build
 * context computed from .dockerignore with Docker's matching rules, and the build stage replayed in a
 * temporary directory, running its commands for real, so the image build is checked by the same tests
 * that check everything else.
 *
 * Rules: https://docs.docker.com/reference/dockerfile/ and https://docs.docker.com/build/concepts/context/#dockerignore-files
 * (last matching line wins; a pattern that matches a parent directory matches everything under it).
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import { ROOT } from "./binary.ts";

export interface Instruction {
  readonly keyword: string;
  /** Flags such as --from=build, --chown=65532:65532, --platform=... */
  readonly flags: Readonly<Record<string, string>>;
  /** The rest of the line (continuations joined). */
  readonly text: string;
  readonly line: number;
}

export interface Stage {
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  /** ARGs before the first FROM. */
  readonly globalArgs: readonly Instruction[];
  readonly stages: readonly Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  let pending = "";
  let startLine = 0;
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) return;
    if (pending !== "" && line.startsWith("#")) return; // comments inside a continued instruction
    if (pending === "") startLine = index + 1;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = `${pending}${line}`.trim();
    pending = "";
    const match = /^([A-Za-z]+)\s+(.*)$/.exec(full);
    if (!match) throw new Error(`Dockerfile line ${startLine}: not an instruction: ${full}`);
    let rest = match[2]!;
    const flags: Record<string, string> = {};
    for (let flag = /^--([a-z-]+)=(\S+)\s+/.exec(rest); flag; flag = /^--([a-z-]+)=(\S+)\s+/.exec(rest)) {
      flags[flag[1]!] = flag[2]!;
      rest = rest.slice(flag[0].length);
    }
    instructions.push({ keyword: match[1]!.toUpperCase(), flags, text: rest.trim(), line: startLine });
  });

  const globalArgs: Instruction[] = [];
  const stages: Array<{ base: string; name: string | undefined; instructions: Instruction[] }> = [];
  for (const instruction of instructions) {
    if (instruction.keyword === "FROM") {
      const [base, as, name] = instruction.text.split(/\s+/);
      stages.push({ base: base!, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== "ARG") throw new Error(`Dockerfile line ${instruction.line}: ${instruction.keyword} before FROM`);
      globalArgs.push(instruction);
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return { globalArgs, stages };
}

/** JSON exec form (`["a", "b"]`) or the words of the shell form. */
export function execForm(text: string): string[] {
  return text.startsWith("[") ? (JSON.parse(text) as string[]) : text.split(/\s+/);
}

/** `KEY=value KEY2="value 2"` pairs of ENV, LABEL and ARG. */
export function keyValues(text: string): Array<[string, string | undefined]> {
  const pairs: Array<[string, string | undefined]> = [];
  for (const match of text.matchAll(/([A-Za-z0-9_.\-]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?/g)) {
    const value = match[2];
    pairs.push([match[1]!, value === undefined ? undefined : value.startsWith('"') ? JSON.parse(value) : value]);
  }
  return pairs;
}

function substitute(text: string, variables: Readonly<Record<string, string>>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, braced?: string, bare?: string) => variables[(braced ?? bare)!] ?? "");
}

interface IgnoreRule {
  readonly pattern: RegExp;
  readonly exclusion: boolean;
  readonly text: string;
}

export function parseDockerignore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split("\n")) {
    let line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const exclusion = line.startsWith("!");
    if (exclusion) line = line.slice(1).trim();
    const cleaned = posix.normalize(line).replace(/^\/+/, "").replace(/\/+$/, "");
    const source = cleaned
      .split(/(\*\*|\*|\?)/)
      .map((part) => (part === "**" ? ".*" : part === "*" ? "[^/]*" : part === "?" ? "[^/]" : part.replace(/[.+^${}()|[\]\\]/g, "\\$&")))
      .join("");
    rules.push({ pattern: new RegExp(`^${source}$`), exclusion, text: cleaned });
  }
  return rules;
}

/** Whether Docker leaves `path` (relative, slash-separated) out of the build context. */
export function isIgnored(rules: readonly IgnoreRule[], path: string): boolean {
  const parts = path.split("/");
  const candidates = parts.map((_, index) => parts.slice(0, index + 1).join("/"));
  let ignored = false;
  for (const rule of rules) {
    if (candidates.some((candidate) => rule.pattern.test(candidate))) ignored = !rule.exclusion;
  }
  return ignored;
}

/** Every file Docker would send as the build context of `directory`. */
export function contextFiles(directory: string = ROOT): string[] {
  const ignorePath = join(directory, ".dockerignore");
  const rules = existsSync(ignorePath) ? parseDockerignore(readFileSync(ignorePath, "utf8")) : [];
  const files: string[] = [];
  const walk = (relativeDirectory: string) => {
    for (const entry of readdirSync(join(directory, relativeDirectory), { withFileTypes: true })) {
      const path = relativeDirectory ? `${relativeDirectory}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        // An excluded directory that no exclusion rule reaches into cannot contribute a file.
        const reachable = rules.some((rule) => rule.exclusion && (rule.text.startsWith(`${path}/`) || rule.text.includes("*")));
        if (isIgnored(rules, path) && !reachable) continue;
        walk(path);
      } else if (!isIgnored(rules, path)) {
        files.push(path);
      }
    }
  };
  walk("");
  return files.sort();
}

export interface ReplayResult {
  /** The stage's filesystem: absolute image paths map to join(filesystem, path). */
  readonly filesystem: string;
  readonly environment: Readonly<Record<string, string>>;
  readonly commands: readonly string[];
}

/**
 * Replays one stage in `workspace`: COPY from the build context, WORKDIR, ARG/ENV, and RUN for real (with
 * `sh -c`). `npm ci` is the one command replaced: the repository's node_modules, installed from the same
 * package-lock.json, is linked in (CI runs the real `npm ci`).
 */
export function replayStage(
  dockerfile: Dockerfile,
  stage: Stage,
  workspace: string,
  buildArgs: Readonly<Record<string, string>>,
  context: string = ROOT,
): ReplayResult {
  const filesystem = join(workspace, stage.name ?? "stage");
  mkdirSync(filesystem, { recursive: true });
  const inImage = (path: string) => join(filesystem, path);
  const variables: Record<string, string> = {};
  const environment: Record<string, string> = {};
  const declare = (instruction: Instruction) => {
    for (const [name, fallback] of keyValues(instruction.text)) variables[name] = buildArgs[name] ?? fallback ?? "";
  };
  for (const instruction of dockerfile.globalArgs) declare(instruction);
  const included = contextFiles(context);
  const commands: string[] = [];
  let workdir = "/";
  for (const instruction of stage.instructions) {
    const text = substitute(instruction.text, { ...variables, ...environment });
    switch (instruction.keyword) {
      case "WORKDIR":
        workdir = posix.resolve(workdir, text);
        mkdirSync(inImage(workdir), { recursive: true });
        break;
      case "ARG":
        declare(instruction);
        break;
      case "ENV":
        for (const [name, value] of keyValues(text)) environment[name] = value ?? "";
        break;
      case "COPY": {
        if (instruction.flags.from) throw new Error("COPY --from is not replayed inside a build stage");
        const words = execForm(text);
        const sources = words.slice(0, -1);
        const destinationWord = words.at(-1)!;
        const destination = posix.resolve(workdir, destinationWord);
        const intoDirectory = sources.length > 1 || /(^|\/)\.?\/?$/.test(destinationWord) || destinationWord.endsWith("/");
        const copy = (file: string, target: string) => {
          mkdirSync(dirname(inImage(target)), { recursive: true });
          copyFileSync(join(context, file), inImage(target));
        };
        for (const source of sources) {
          const wanted = posix.normalize(source).replace(/\/$/, "");
          const prefix = wanted === "." ? "" : `${wanted}/`;
          const underDirectory = included.filter((file) => file.startsWith(prefix));
          if (wanted === "." || (underDirectory.length > 0 && !included.includes(wanted))) {
            for (const file of underDirectory) copy(file, posix.join(destination, file.slice(prefix.length)));
          } else if (included.includes(wanted)) {
            copy(wanted, intoDirectory ? posix.join(destination, posix.basename(wanted)) : destination);
          } else {
            throw new Error(`COPY ${source}: not in the build context (see .dockerignore)`);
          }
        }
        break;
      }
      case "RUN": {
        commands.push(text);
        const cwd = inImage(workdir);
        if (/^npm ci\b/.test(text)) {
          symlinkSync(join(ROOT, "node_modules"), join(cwd, "node_modules"));
          break;
        }
        const result = Bun.spawnSync(["sh", "-c", text], {
          cwd,
          env: { PATH: `${join(cwd, "node_modules/.bin")}:${process.env.PATH}`, HOME: process.env.HOME ?? "/root", ...variables, ...environment },
          stdout: "pipe",
          stderr: "pipe",
        });
        if (result.exitCode !== 0) {
          throw new Error(`RUN ${text} failed (${result.exitCode}): ${result.stderr.toString()}${result.stdout.toString()}`);
        }
        break;
      }
      default:
        throw new Error(`Dockerfile line ${instruction.line}: ${instruction.keyword} is not replayed in a build stage`);
    }
  }
  return { filesystem, environment, commands };
}

/** The final stage's COPY --from sources, resolved inside the replayed build stage. */
export function copyFromBuild(stage: Stage, built: ReplayResult, target: string): Array<{ source: string; destination: string }> {
  const copies: Array<{ source: string; destination: string }> = [];
  for (const instruction of stage.instructions) {
    if (instruction.keyword !== "COPY" || !instruction.flags.from) continue;
    const [source, destination] = execForm(instruction.text);
    const from = join(built.filesystem, source!);
    if (!existsSync(from)) throw new Error(`COPY --from=${instruction.flags.from} ${source}: the build stage did not produce it`);
    const to = join(target, destination!);
    mkdirSync(dirname(to), { recursive: true });
    cpSync(from, to, { recursive: true });
    copies.push({ source: source!, destination: destination! });
  }
  return copies;
}
