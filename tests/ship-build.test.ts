/**
 * build.ts: the stamped, checksummed, smoke-tested binary. Builds go to a temporary --outdir (this
 * machine's target only, which needs no download); `npm run build` does every release target.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import packageJson from "../package.json" with { type: "json" };
import { ARGS } from "../src/cli/config.ts";
import { ROOT } from "./support/binary.ts";
import { run } from "./support/ship-install.ts";

const BUN = process.execPath;

function build(args: string[], env: Record<string, string> = {}) {
  return run([BUN, join(ROOT, "build.ts"), ...args], { env: { HOME: process.env.HOME ?? "/root", ...env } });
}

/** What build.ts should stamp, asked of git directly. */
function expectedCommit(): string {
  const head = run(["git", "rev-parse", "--short=12", "HEAD"]);
  if (head.exitCode !== 0) return "unknown";
  const dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.trim() !== "";
  return `${head.stdout.trim()}${dirty ? "-dirty" : ""}`;
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

describe("build.ts", () => {
  const outdir = mkdtempSync(join(tmpdir(), "xtrader-build-"));
  // Left over from an earlier build: a host build must leave it, and SHA256SUMS must cover it.
  writeFileSync(join(outdir, "xtrader-linux-arm64"), "an earlier release binary\n");
  const commit = expectedCommit();
  const result = build(["--outdir", outdir]);

  test("builds this machine's binary, stamped with the package version and the git commit", () => {
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain(`xtrader ${packageJson.version} (${commit})`);
    const binary = join(outdir, "xtrader");
    expect(statSync(binary).mode & 0o111).not.toBe(0);
    const version = run([binary, "--version"]);
    expect(version.exitCode).toBe(0);
    expect(version.stdout).toBe(`xtrader ${packageJson.version} (${commit})\n`);
  });

  test("--help lists every option of the command line and the environment", () => {
    const help = run([join(outdir, "xtrader"), "--help"]);
    expect(help.exitCode).toBe(0);
    for (const option of Object.keys(ARGS)) expect(help.stdout).toContain(`--${option}`);
    expect(help.stdout).toContain("SUBSCRIPTIONS");
  });

  test("SHA256SUMS beside the binaries lists every one of them with its real digest", () => {
    const sums = readFileSync(join(outdir, "SHA256SUMS"), "utf8").trimEnd().split("\n");
    const binaries = readdirSync(outdir).filter((name) => name.startsWith("xtrader")).sort();
    expect(binaries).toEqual(["xtrader", "xtrader-linux-arm64"]);
    expect(sums).toEqual(binaries.map((name) => `${sha256(join(outdir, name))}  ${name}`));
    // The format sha256sum -c reads.
    const check = run(["sha256sum", "-c", "SHA256SUMS"], { cwd: outdir });
    expect(check.exitCode).toBe(0);
    expect(check.stdout).toContain("xtrader: OK");
  });

  test("XTRADER_COMMIT stamps builds without .git (containers); a malformed value is refused", () => {
    const stamped = mkdtempSync(join(tmpdir(), "xtrader-build-"));
    const built = build(["--quiet", "--outdir", stamped], { XTRADER_COMMIT: "abcdef012345" });
    expect(built.exitCode).toBe(0);
    expect(built.stdout).toBe("");
    expect(run([join(stamped, "xtrader"), "--version"]).stdout).toBe(`xtrader ${packageJson.version} (abcdef012345)\n`);

    const refused = build(["--quiet", "--outdir", stamped], { XTRADER_COMMIT: "main; rm -rf /" });
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toBe("build: XTRADER_COMMIT 'main; rm -rf /' is not a git commit (7 to 40 hex digits, optional -dirty)\n");
  });

  test("unknown targets and arguments exit 2 naming what is accepted", () => {
    const target = build(["--target", "windows-x64"]);
    expect(target.exitCode).toBe(2);
    expect(target.stderr).toBe(
      "build: unknown target 'windows-x64'; accepted: linux-x64, linux-arm64, linux-x64-musl, linux-arm64-musl, linux-x64-baseline, linux-x64-musl-baseline\n",
    );
    const argument = build(["--fast"]);
    expect(argument.exitCode).toBe(2);
    expect(argument.stderr).toBe("build: unknown argument '--fast'; accepted: --all, --target NAME, --outdir DIR, --quiet\n");
  });

  test("npm run build makes the release: every target", () => {
    expect(packageJson.scripts.build).toBe("bun build.ts --all");
    const source = readFileSync(join(ROOT, "build.ts"), "utf8");
    const targets = /const RELEASE_TARGETS = \[([^\]]+)\]/.exec(source)![1]!.match(/"[^"]+"/g)!.map((text) => JSON.parse(text));
    expect(targets).toEqual(["linux-x64", "linux-arm64", "linux-x64-musl", "linux-arm64-musl"]);
    const guide = readFileSync(join(ROOT, "docs/deployment.md"), "utf8");
    for (const name of targets) expect(guide).toContain(`xtrader-${name}`);
  });
});
