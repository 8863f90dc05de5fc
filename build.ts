/**
 * Builds the single-file executable.
 *
 *   bun build.ts                  dist/xtrader for this machine (what `npm test` runs, with --quiet)
 *   bun build.ts --all            release: every RELEASE_TARGET as dist/xtrader-<target>, plus dist/xtrader
 *                                 for this machine (`npm run build`); stale binaries in dist/ are removed first
 *   bun build.ts --target NAME    one target (repeatable): RELEASE_TARGETS or EXTRA_TARGETS below
 *   --outdir DIR                  write somewhere other than dist/ (tests build into a temporary directory)
 *   --quiet                       print nothing on success
 *
 * Every build is minified, precompiled to bytecode (halves start-up time), and stamped with the package
 * version and the git commit (`xtrader --version` prints both). The commit is `git rev-parse --short=12 HEAD`
 * (suffix -dirty when tracked files differ), or XTRADER_COMMIT when set: container builds have no .git.
 * SHA256SUMS beside the binaries covers every xtrader* file in the output directory; check a download with
 * `sha256sum --ignore-missing -c SHA256SUMS`. Binaries this machine can execute are smoke-tested
 * (`--version` must print the stamped line) before the build counts as done.
 * The binary's own .env autoload is off: src/cli/dotenv.ts is the one rule.
 */
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import packageJson from "./package.json" with { type: "json" };

/** What a release ships (docs/deployment.md lists them with sizes). */
const RELEASE_TARGETS = ["linux-x64", "linux-arm64", "linux-x64-musl", "linux-arm64-musl"] as const;
/** On request only: x64 builds for CPUs without AVX2 (before 2013), which the default x64 runtime needs. */
const EXTRA_TARGETS = ["linux-x64-baseline", "linux-x64-musl-baseline"] as const;
type Target = (typeof RELEASE_TARGETS)[number] | (typeof EXTRA_TARGETS)[number];
const KNOWN_TARGETS: readonly string[] = [...RELEASE_TARGETS, ...EXTRA_TARGETS];

const COMMIT_PATTERN = /^([0-9a-f]{7,40}(-dirty)?|unknown)$/;

function fail(message: string, code = 1): never {
  console.error(`build: ${message}`);
  process.exit(code);
}

function parseArguments(argv: readonly string[]) {
  const options = { quiet: false, all: false, targets: [] as Target[], outdir: join(import.meta.dir, "dist") };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    if (argument === "--quiet") options.quiet = true;
    else if (argument === "--all") options.all = true;
    else if (argument === "--target") {
      const target = argv[++i];
      if (target === undefined || !KNOWN_TARGETS.includes(target)) {
        fail(`unknown target '${target ?? ""}'; accepted: ${KNOWN_TARGETS.join(", ")}`, 2);
      }
      options.targets.push(target as Target);
    } else if (argument === "--outdir") {
      const directory = argv[++i];
      if (!directory) fail("--outdir needs a directory", 2);
      options.outdir = isAbsolute(directory) ? directory : resolve(directory);
    } else {
      fail(`unknown argument '${argument}'; accepted: --all, --target NAME, --outdir DIR, --quiet`, 2);
    }
  }
  if (options.all) options.targets.unshift(...RELEASE_TARGETS);
  options.targets = [...new Set(options.targets)];
  return options;
}

function gitCommit(): string {
  const fromEnvironment = process.env.XTRADER_COMMIT?.trim();
  if (fromEnvironment) {
    if (!COMMIT_PATTERN.test(fromEnvironment)) {
      fail(`XTRADER_COMMIT '${fromEnvironment}' is not a git commit (7 to 40 hex digits, optional -dirty)`, 2);
    }
    return fromEnvironment;
  }
  const git = (...args: string[]) => {
    try {
      return Bun.spawnSync(["git", ...args], { cwd: import.meta.dir, stderr: "ignore" });
    } catch {
      return undefined; // no git installed
    }
  };
  const head = git("rev-parse", "--short=12", "HEAD");
  const commit = head?.success ? head.stdout.toString().trim() : "";
  if (!commit) return "unknown";
  const status = git("status", "--porcelain", "--untracked-files=no");
  return status?.success && status.stdout.toString().trim() !== "" ? `${commit}-dirty` : commit;
}

/** The release target this machine runs, when it is one (used to decide what can be smoke-tested). */
function hostTarget(): Target | undefined {
  if (process.platform !== "linux") return undefined;
  const arch = process.arch === "x64" ? "x64" : process.arch === "arm64" ? "arm64" : undefined;
  if (!arch) return undefined;
  const musl = existsSync(arch === "x64" ? "/lib/ld-musl-x86_64.so.1" : "/lib/ld-musl-aarch64.so.1");
  const glibc = existsSync(arch === "x64" ? "/lib64/ld-linux-x86-64.so.2" : "/lib/ld-linux-aarch64.so.1");
  return glibc ? `linux-${arch}` : musl ? `linux-${arch}-musl` : undefined;
}

/**
 * Whether to smoke-test a binary built for `target` here: only this machine's own kind. (A musl build on a
 * glibc host with musl's loader installed still lacks musl's libstdc++, so "the loader exists" is not enough.)
 */
function canRun(target: Target | undefined, host: Target | undefined): boolean {
  return target === undefined || (host !== undefined && (target === host || target === `${host}-baseline`));
}

async function compile(target: Target | undefined, outfile: string, commit: string): Promise<void> {
  const result = await Bun.build({
    entrypoints: [join(import.meta.dir, "src/main.ts")],
    minify: true,
    sourcemap: "none",
    // ESM bytecode needs compile (https://bun.sh/reference/bun/BuildConfig/bytecode).
    bytecode: true,
    format: "esm",
    define: { XTRADER_BUILD_COMMIT: JSON.stringify(commit) },
    compile: {
      outfile,
      ...(target ? { target: `bun-${target}` as Bun.Build.CompileTarget } : {}),
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
  });
  if (!result.success) {
    for (const message of result.logs) console.error(message);
    fail(`compiling ${target ?? "for this machine"} failed`);
  }
}

/** Runs `--version` and insists on the stamped line: a binary that cannot start is not a build. */
function smokeTest(file: string, expected: string): void {
  const run = Bun.spawnSync([file, "--version"], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  const printed = run.stdout.toString().trim();
  if (run.exitCode !== 0 || printed !== expected) {
    fail(`${file} --version printed '${printed}' (exit ${run.exitCode}); expected '${expected}'`);
  }
}

function writeChecksums(outdir: string): string[] {
  const binaries = readdirSync(outdir)
    .filter((name) => /^xtrader(-[a-z0-9-]+)?$/.test(name) && statSync(join(outdir, name)).isFile())
    .sort();
  const lines = binaries.map((name) => {
    const digest = createHash("sha256").update(readFileSync(join(outdir, name))).digest("hex");
    return `${digest}  ${name}`;
  });
  writeFileSync(join(outdir, "SHA256SUMS"), `${lines.join("\n")}\n`);
  return binaries;
}

const options = parseArguments(process.argv.slice(2));
const commit = gitCommit();
const versionLine = `xtrader ${packageJson.version} (${commit})`;
mkdirSync(options.outdir, { recursive: true });
if (options.all) {
  // A release directory holds one consistent set: no binary left over from an earlier commit.
  for (const name of readdirSync(options.outdir)) {
    if (/^xtrader(-[a-z0-9-]+)?$/.test(name)) rmSync(join(options.outdir, name), { force: true });
  }
}

const host = hostTarget();
const built: string[] = [];
for (const target of options.targets) {
  const outfile = join(options.outdir, `xtrader-${target}`);
  await compile(target, outfile, commit);
  if (canRun(target, host)) smokeTest(outfile, versionLine);
  built.push(outfile);
}
// dist/xtrader, this machine's binary, whenever no single --target was asked for: a copy of the matching
// release binary when one was just built (identical bytes), else compiled.
if (options.targets.length === 0 || options.all) {
  const outfile = join(options.outdir, "xtrader");
  const sameBuild = host && options.targets.includes(host) ? join(options.outdir, `xtrader-${host}`) : undefined;
  if (sameBuild) copyFileSync(sameBuild, outfile);
  else await compile(undefined, outfile, commit);
  smokeTest(outfile, versionLine);
  built.push(outfile);
}

const summed = writeChecksums(options.outdir);
if (!options.quiet) {
  for (const file of built) {
    const megabytes = (statSync(file).size / 1024 / 1024).toFixed(1);
    console.log(`built ${file} (${megabytes} MiB, ${versionLine})`);
  }
  console.log(`wrote ${join(options.outdir, "SHA256SUMS")} (${summed.length} file(s))`);
}
