/**
 * The upload flags and variables (docs/deployment.md, "Object storage") → UploadSettings, checked before
 * anything starts. Every variable is checked when set, upload on or off, so that a typo never waits for
 * the day uploads are turned on.
 */
import * as v from "valibot";
import { UserError } from "../core/errors.ts";
import { parseUploadUrl, sanitizeInstanceId, type UploadSettings } from "../upload/settings.ts";
import type { Environment } from "./dotenv.ts";
import { booleanText, check, endpointUrl, integer, positiveSeconds } from "./rules.ts";

/**
 * Upload is on when `target` is set. The instance identity is resolved at start (it may ask the ECS
 * metadata endpoint): only an explicit one here.
 */
export type CliUploadSettings = Omit<UploadSettings, "instanceId" | "target"> & {
  readonly target: UploadSettings["target"] | undefined;
  readonly instanceId: string | undefined;
};

export const DEFAULT_MAX_LOCAL_BYTES = 8 * 1024 ** 3;
export const DEFAULT_UNREADY_AFTER_SECONDS = 900;
export const DEFAULT_UPLOAD_STOP_WAIT_SECONDS = 5;
const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 15;

/** AWS regions and the names S3-compatible stores use (`auto` for R2, `us-east-1` for MinIO). */
const REGION = v.pipe(
  v.string(),
  v.trim(),
  v.regex(/^[a-z0-9][a-z0-9-]{0,31}$/, (issue) => `invalid region '${issue.input}'; expected a region name such as eu-west-1 (AWS_REGION)`),
);

export function uploadSettings(input: {
  readonly setting: (flag: string | undefined, env: string) => string | undefined;
  readonly env: Environment;
  readonly keepLocalFlag: unknown;
  readonly sink: string;
}): CliUploadSettings {
  const { setting, env } = input;
  const urlText = setting("upload-url", "UPLOAD_URL");
  const target = urlText === undefined ? undefined : parseUploadUrl(urlText);
  const keepLocalText = setting(undefined, "KEEP_LOCAL");
  const keepLocal = input.keepLocalFlag === true || (input.keepLocalFlag === undefined && keepLocalText !== undefined && check(booleanText("KEEP_LOCAL"), keepLocalText));
  const maxLocalBytes = check(integer("max local bytes", 1), setting("max-local-bytes", "MAX_LOCAL_BYTES") ?? String(DEFAULT_MAX_LOCAL_BYTES));
  const instanceText = setting("instance-id", "INSTANCE_ID");
  const instanceId = instanceText === undefined ? undefined : sanitizeInstanceId(instanceText);
  if (instanceText !== undefined && instanceId !== instanceText.trim()) {
    throw new UserError(`invalid instance id '${instanceText.trim()}'; expected letters, digits, '_', '.' and '-' only (it becomes part of object names)`);
  }
  const endpointText = env.AWS_ENDPOINT_URL_S3?.trim() || env.AWS_ENDPOINT_URL?.trim() || undefined;
  const endpointName = env.AWS_ENDPOINT_URL_S3?.trim() ? "AWS_ENDPOINT_URL_S3" : "AWS_ENDPOINT_URL";
  const endpoint = endpointText === undefined ? undefined : check(endpointUrl(endpointName, ["http:", "https:"]), endpointText);
  const regionText = env.AWS_REGION?.trim() || env.AWS_DEFAULT_REGION?.trim() || undefined;
  const region = regionText === undefined ? "us-east-1" : check(REGION, regionText);
  const unreadyText = env.XTRADER_UPLOAD_UNREADY_AFTER_SECONDS?.trim();
  const unreadyAfterSeconds = unreadyText ? check(positiveSeconds("XTRADER_UPLOAD_UNREADY_AFTER_SECONDS"), unreadyText) : DEFAULT_UNREADY_AFTER_SECONDS;
  const stopWaitText = env.XTRADER_UPLOAD_STOP_WAIT_SECONDS?.trim();
  const shutdownSeconds = Number(env.XTRADER_SHUTDOWN_TIMEOUT_SECONDS?.trim() || DEFAULT_SHUTDOWN_TIMEOUT_SECONDS);
  // Unset: 5 s, or half the stop's bound when that is shorter (the stop also drains and closes files).
  const stopWaitSeconds = stopWaitText
    ? check(positiveSeconds("XTRADER_UPLOAD_STOP_WAIT_SECONDS"), stopWaitText)
    : Math.min(DEFAULT_UPLOAD_STOP_WAIT_SECONDS, shutdownSeconds / 2);
  if (target !== undefined && stopWaitSeconds >= shutdownSeconds) {
    throw new UserError(
      `XTRADER_UPLOAD_STOP_WAIT_SECONDS '${stopWaitSeconds}' is not below XTRADER_SHUTDOWN_TIMEOUT_SECONDS '${shutdownSeconds}'; the stop must finish uploading before it times out`,
    );
  }
  if (target !== undefined && input.sink !== "parquet") {
    throw new UserError(`--upload-url uploads Parquet files; it needs --sink parquet (the sink is ${input.sink})`);
  }
  return { target, endpoint, region, keepLocal, maxLocalBytes, instanceId, unreadyAfterSeconds, stopWaitSeconds };
}
