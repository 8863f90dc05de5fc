/**
 * Flag values that arrived as an unexpanded environment reference: `${NAME}`, `$NAME` or `$(NAME)`.
 *
 * Who expands what before xtrader sees its arguments: a shell and systemd expand `$NAME`/`${NAME}`,
 * Kubernetes expands `$(NAME)` in `command`/`args` from the container's env, but ECS task definitions and
 * Docker's exec form (`CMD ["--subscriptions", "${SUBSCRIPTIONS}"]`) expand nothing, so the binary would
 * receive the literal text. A flag value that is exactly one such reference is therefore read from the
 * variable NAME (the merged environment, `.env` included), with a debug line saying so. Only whole-value
 * references count: `BTC$USDT` or `a,${B}` are values, never partially expanded.
 */
import { UserError } from "../core/errors.ts";
import { SECRET_NAME } from "../observability/logging.ts";
import type { Environment } from "./dotenv.ts";

const REFERENCE = /^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|\(([A-Za-z_][A-Za-z0-9_]*)\)|([A-Za-z_][A-Za-z0-9_]*))$/;

/** The variable a flag value names when it is exactly `${NAME}`, `$(NAME)` or `$NAME`; else undefined. */
export function referencedVariable(value: string): string | undefined {
  const match = REFERENCE.exec(value.trim());
  return match ? (match[1] ?? match[2] ?? match[3]) : undefined;
}

/**
 * Returns the flags with every reference replaced by its variable's value, and one debug line per
 * replacement (naming the variable, never its value: it may be a secret). A reference to a variable that
 * is unset or blank is bad input: one line, exit 2.
 */
export function resolveEnvironmentReferences(
  args: Readonly<Record<string, unknown>>,
  env: Environment,
): { readonly args: Readonly<Record<string, unknown>>; readonly debug: readonly string[] } {
  const resolved: Record<string, unknown> = { ...args };
  const debug: string[] = [];
  for (const [flag, value] of Object.entries(args)) {
    if (typeof value !== "string") continue;
    const name = referencedVariable(value);
    if (name === undefined) continue;
    // No flag takes a secret, and an error about a bad flag value quotes the value: never a secret's.
    if (SECRET_NAME.test(name) || name === "QDB_CLIENT_CONF") {
      throw new UserError(`option --${flag} refers to ${name}, which holds a secret; no option takes one (secrets are read from their own variables)`);
    }
    const fromEnv = env[name];
    if (fromEnv === undefined || fromEnv.trim() === "") {
      throw new UserError(
        `option --${flag} is the unexpanded reference '${value.trim()}' and ${name} is not set; set ${name} in the environment or give the value itself`,
      );
    }
    resolved[flag] = fromEnv;
    debug.push(`--${flag} arrived as the literal '${value.trim()}' (nothing expanded it): using the environment variable ${name}`);
  }
  return { args: resolved, debug };
}
