/**
 * Bare-metal installs into a temporary root with systemd/install.sh, and systemd-analyze on the result:
 * the unit is checked exactly as shipped, next to the binary install.sh put in place, instead of a copy
 * rewritten to point elsewhere.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./binary.ts";

export const SYSTEMD_DIRECTORY = join(ROOT, "systemd");
export const INSTALL_SCRIPT = join(SYSTEMD_DIRECTORY, "install.sh");
export const UNIT_FILE = join(SYSTEMD_DIRECTORY, "xtrader@.service");
export const ENV_EXAMPLE = join(SYSTEMD_DIRECTORY, "xtrader.env.example");

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function run(command: readonly string[], options: { cwd?: string; env?: Record<string, string> } = {}): CommandResult {
  const result = Bun.spawnSync([...command], {
    cwd: options.cwd ?? ROOT,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...options.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { exitCode: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

export function temporaryRoot(prefix = "xtrader-root-"): string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  // systemd-sysusers writes DIR/etc/passwd only when DIR/etc exists, as on a real system.
  mkdirSync(join(root, "etc"), { recursive: true });
  return root;
}

/** `install.sh --root ROOT BINARY [INSTANCE [SUBSCRIPTIONS]]`. */
export function install(root: string, binary: string, ...instanceAndSubscriptions: string[]): CommandResult {
  return run(["sh", INSTALL_SCRIPT, "--root", root, binary, ...instanceAndSubscriptions]);
}

/**
 * Gives a temporary root the distribution's own units (sysinit.target, multi-user.target, ...) that
 * every service depends on, so systemd-analyze can load the dependency graph inside it.
 */
export function addDistributionUnits(root: string): void {
  const source = ["/usr/lib/systemd/system", "/lib/systemd/system"].find((path) => existsSync(join(path, "sysinit.target")));
  if (!source) throw new Error("the distribution's systemd units are not installed (Debian package systemd)");
  cpSync(realpathSync(source), join(root, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
}
