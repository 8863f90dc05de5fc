/**
 * The object store behind the uploader: Bun's native S3 client (Bun.S3Client) for the transfers, with
 * credentials resolved the way the AWS SDKs resolve them (@aws-sdk/credential-providers'
 * fromNodeProviderChain): static keys in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN), shared files (AWS_PROFILE), the ECS task role (container credentials endpoint), EKS
 * IRSA and Pod Identity (web identity token file, container credentials endpoint), and the EC2 instance
 * profile (IMDSv2). Bun's client reads static keys only; the chain is what makes roles work. Temporary
 * credentials are refreshed before they expire.
 */
import type { S3Client, S3Options } from "bun";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import type { UploadSettings } from "./settings.ts";

export interface StoredObject {
  readonly size: number;
  /** The ETag as the store reports it, without quotes. */
  readonly etag: string;
}

/** What the uploader asks of a store. */
export interface ObjectStore {
  /** The object's size and ETag, or undefined when there is no such key. */
  stat(key: string): Promise<StoredObject | undefined>;
  /** Uploads the local file under `key` (multipart with `partSize` parts when larger). */
  put(key: string, path: string, partSize: number): Promise<void>;
}

interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
}

/** Temporary credentials are replaced this long before they expire (uploads of big files take a while). */
const REFRESH_BEFORE_EXPIRY_MS = 5 * 60_000;

export class S3Store implements ObjectStore {
  private client: S3Client | undefined;
  private credentials: Credentials | undefined;
  private pending: Promise<S3Client> | undefined;
  private readonly provider: () => Promise<Credentials>;

  constructor(
    private readonly settings: Pick<UploadSettings, "target" | "endpoint" | "region">,
    provider?: () => Promise<Credentials>,
    private readonly now: () => number = Date.now,
  ) {
    this.provider = provider ?? fromNodeProviderChain({ clientConfig: { region: settings.region } });
  }

  /** Full object key under the configured prefix. */
  objectKey(relativeKey: string): string {
    return this.settings.target.prefix === "" ? relativeKey : `${this.settings.target.prefix}/${relativeKey}`;
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    const client = await this.currentClient();
    try {
      const stats = await client.stat(this.objectKey(key));
      return { size: stats.size, etag: stats.etag.replace(/^"|"$/g, "") };
    } catch (error) {
      // Bun's client reports a HEAD's 404 (no body) as NoSuchKey.
      const code = (error as { code?: string }).code;
      if (code === "NoSuchKey" || code === "NotFound") return undefined;
      throw error;
    }
  }

  async put(key: string, path: string, partSize: number): Promise<void> {
    const client = await this.currentClient();
    // queueSize 2: parts in flight at once; each holds a part in memory. retry 0: the uploader retries the
    // whole file with its own backoff, counted and logged.
    await client.write(this.objectKey(key), Bun.file(path), {
      partSize,
      queueSize: 2,
      retry: 0,
      type: "application/vnd.apache.parquet",
    });
  }

  /** A client with valid credentials, made anew when the previous credentials near their expiry. */
  private async currentClient(): Promise<S3Client> {
    const expiration = this.credentials?.expiration?.getTime();
    if (this.client && (expiration === undefined || expiration - this.now() > REFRESH_BEFORE_EXPIRY_MS)) return this.client;
    this.pending ??= (async () => {
      try {
        const credentials = await this.provider();
        const options: S3Options = {
          bucket: this.settings.target.bucket,
          region: this.settings.region,
          accessKeyId: credentials.accessKeyId,
          secretAccessKey: credentials.secretAccessKey,
          ...(credentials.sessionToken ? { sessionToken: credentials.sessionToken } : {}),
          ...(this.settings.endpoint ? { endpoint: this.settings.endpoint } : {}),
        };
        this.credentials = credentials;
        this.client = new Bun.S3Client(options);
        return this.client;
      } finally {
        this.pending = undefined;
      }
    })();
    return this.pending;
  }
}
