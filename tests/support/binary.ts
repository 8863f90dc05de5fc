/**
 * The compiled binary under test. `npm test` builds it first (bun build.ts --quiet); when a test file is
 * run on its own and dist/xtrader is missing, it is built here.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..", "..");
export const BINARY = join(ROOT, "dist", "xtrader");

export function ensureBinary(): string {
  if (!existsSync(BINARY)) {
    const built = Bun.spawnSync(["bun", "build.ts", "--quiet"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
    if (!built.success) throw new Error("building dist/xtrader failed");
  }
  return BINARY;
}

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the binary to completion with exactly `env` (plus PATH) in `cwd`. */
export async function runBinary(
  args: readonly string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const child = Bun.spawn([ensureBinary(), ...args], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...options.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 20_000);
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}
