/**
 * The instance identity written into uploaded object names: INSTANCE_ID / --instance-id when given, else
 * the Kubernetes pod name (POD_NAME, or HOSTNAME, which Kubernetes sets to it), else the ECS task id (from
 * the task metadata endpoint ECS gives every container), else the host name. Two instances writing the
 * same table, or two redundant instances recording the same instruments, thus never write the same key.
 */
import { hostname } from "node:os";
import { sanitizeInstanceId } from "./settings.ts";

/** The ECS task metadata endpoint v4 answers at once on the task's link-local address; this is plenty. */
const ECS_METADATA_TIMEOUT_MS = 2000;

export async function instanceIdentity(env: Readonly<Record<string, string | undefined>>, explicit: string | undefined): Promise<string> {
  const named = explicit?.trim() || env.POD_NAME?.trim();
  if (named) return sanitizeInstanceId(named);
  const taskId = await ecsTaskId(env.ECS_CONTAINER_METADATA_URI_V4?.trim());
  if (taskId) return sanitizeInstanceId(taskId);
  return sanitizeInstanceId(env.HOSTNAME?.trim() || hostname());
}

/**
 * The task id (the last part of the task ARN) from ECS's task metadata endpoint v4, `${URI}/task`
 * (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4.html).
 */
async function ecsTaskId(metadataUri: string | undefined): Promise<string | undefined> {
  if (!metadataUri) return undefined;
  try {
    const response = await fetch(`${metadataUri}/task`, { signal: AbortSignal.timeout(ECS_METADATA_TIMEOUT_MS) });
    if (!response.ok) return undefined;
    const task = (await response.json()) as { TaskARN?: unknown };
    return typeof task.TaskARN === "string" ? task.TaskARN.split("/").at(-1) : undefined;
  } catch {
    return undefined;
  }
}
