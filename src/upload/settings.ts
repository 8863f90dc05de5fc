/**
 * Settings of the upload of closed files to S3-compatible object storage (docs/deployment.md, "Object
 * storage"). Built by the CLI from flags and environment; read by the uploader and the store.
 */
import { UserError } from "../core/errors.ts";

export interface UploadTarget {
  readonly bucket: string;
  /** Key prefix without leading or trailing slash; "" for the bucket's root. */
  readonly prefix: string;
}

export interface UploadSettings {
  readonly target: UploadTarget;
  /** S3-compatible endpoint (MinIO, R2, Ceph, GCS); undefined = AWS S3 of `region`. */
  readonly endpoint: string | undefined;
  readonly region: string;
  /** Keep the local copy after a verified upload (default: delete it). */
  readonly keepLocal: boolean;
  /** Bytes of closed files waiting for upload past which the sink holds the pipeline. */
  readonly maxLocalBytes: number;
  /** Written into every object name, so that instances never overwrite each other. */
  readonly instanceId: string;
  /** /readyz turns unready when the oldest file waiting for upload is older than this. */
  readonly unreadyAfterSeconds: number;
  /** How long a stop keeps uploading what is pending before it leaves the rest for the next start. */
  readonly stopWaitSeconds: number;
}

/** `s3://bucket/prefix` → bucket and prefix. Bucket names follow S3's rules (3-63 of a-z 0-9 . -). */
export function parseUploadUrl(text: string): UploadTarget {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(text.trim());
  const prefix = match?.[2]?.replace(/^\/+|\/+$/g, "") ?? "";
  if (!match || /\/\/|(^|\/)\.\.?(\/|$)/.test(prefix) || /[\x00-\x1f\\]/.test(prefix)) {
    throw new UserError(
      `invalid upload URL '${text.trim()}'; expected s3://BUCKET or s3://BUCKET/PREFIX (bucket: 3-63 of a-z 0-9 . -), e.g. s3://market-data/xtrader`,
    );
  }
  return { bucket: match[1]!, prefix };
}

/** What an instance identity may contain: it becomes part of object names. */
export function sanitizeInstanceId(text: string): string {
  return text.trim().replace(/[^A-Za-z0-9_.-]+/g, "_").slice(0, 100);
}
