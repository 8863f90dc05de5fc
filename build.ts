/**
 * Builds the single-file executable: `bun build.ts` → dist/xtrader (this machine's platform).
 *   --target linux-x64|linux-arm64|linux-x64-musl|linux-arm64-musl (repeatable), --all for every release target,
 *   --quiet for test runs. Release builds are minified, stamped with the version and git commit, and get a
 *   SHA256SUMS file beside them. The binary's own .env autoload is off: src/cli/dotenv.ts is the one rule.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import packageJson from "./package.json" with { type: "json" };

const RELEASE_TARGETS = ["linux-x64", "linux-arm64", "linux-x64-musl", "linux-arm64-musl"] as const;
type Target = (typeof RELEASE_TARGETS)[number];

const argv = process.argv.slice(2);
const quiet = argv.includes("--quiet");
const targets: Target[] = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--all") targets.push(...RELEASE_TARGETS);
  else if (argv[i] === "--target") {
    const target = argv[++i] as Target;
    if (!RELEASE_TARGETS.includes(target)) {
      console.error(`build: unknown target '${target}'; accepted: ${RELEASE_TARGETS.join(", ")}`);
      process.exit(2);
    }
    targets.push(target);
  } else if (argv[i] !== "--quiet") {
    console.error(`build: unknown argument '${argv[i]}'; accepted: --target NAME, --all, --quiet`);
    process.exit(2);
  }
}

function gitCommit(): string {
  const result = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"], { stderr: "ignore" });
  const commit = result.success ? result.stdout.toString().trim() : "";
  if (!commit) return "unknown";
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"], { stderr: "ignore" });
  return dirty.success && dirty.stdout.toString().trim() !== "" ? `${commit}-dirty` : commit;
}

const distDirectory = join(import.meta.dir, "dist");
mkdirSync(distDirectory, { recursive: true });
const commit = gitCommit();

async function build(target: Target | undefined): Promise<string> {
  const outfile = join(distDirectory, target ? `xtrader-${target}` : "xtrader");
  const result = await Bun.build({
    entrypoints: [join(import.meta.dir, "src/main.ts")],
    minify: true,
    sourcemap: "none",
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
    process.exit(1);
  }
  return outfile;
}

const outputs: string[] = [];
if (targets.length === 0) outputs.push(await build(undefined));
for (const target of targets) outputs.push(await build(target));

const sums = outputs.map((file) => {
  const digest = createHash("sha256").update(readFileSync(file)).digest("hex");
  return `${digest}  ${file.slice(distDirectory.length + 1)}`;
});
writeFileSync(join(distDirectory, "SHA256SUMS"), `${sums.join("\n")}\n`);
if (!quiet) {
  for (const file of outputs) console.log(`built ${file} (xtrader ${packageJson.version}, ${commit})`);
}
