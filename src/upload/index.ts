/**
 * Upload of closed Parquet files to object storage, wired as a listener of the sink's "file closed"
 * events (see uploader.ts for the guarantees, sink.ts for the lifecycle, docs/deployment.md for use).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "../core/log.ts";
import type { Sink } from "../core/sink.ts";
import { instanceIdentity } from "./identity.ts";
import type { UploadSettings } from "./settings.ts";
import { UploadingSink } from "./sink.ts";
import { S3Store, type ObjectStore } from "./store.ts";
import { Uploader } from "./uploader.ts";

export { instanceIdentity } from "./identity.ts";
export type { UploadSettings } from "./settings.ts";

export interface Upload {
  readonly sink: Sink;
  readonly uploader: Uploader;
  readonly settings: UploadSettings;
  /** Metrics and the /readyz condition (observability's extension). */
  readonly observability: {
    register(registry: Registry): void;
    readinessProblem(): string | undefined;
  };
}

/**
 * Resolves the instance identity, then makes the sink (`makeSink` receives the listener to give the
 * Parquet sink as onFileClosed) and wraps it.
 */
export async function withUpload(options: {
  readonly root: string;
  readonly settings: Omit<UploadSettings, "instanceId"> & { readonly instanceId: string | undefined };
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly log: Logger;
  readonly makeSink: (onFileClosed: (path: string) => void) => Sink;
  /** Defaults to the S3 store of the settings. */
  readonly store?: ObjectStore;
}): Promise<Upload> {
  const settings: UploadSettings = { ...options.settings, instanceId: await instanceIdentity(options.env, options.settings.instanceId) };
  const uploader = new Uploader({ root: options.root, settings, store: options.store ?? new S3Store(settings), log: options.log });
  const inner = options.makeSink((path) => uploader.fileClosed(path));
  const sink = new UploadingSink(inner, uploader, { log: options.log, maxLocalBytes: settings.maxLocalBytes, stopWaitMs: settings.stopWaitSeconds * 1000 });
  return { sink, uploader, settings, observability: uploadObservability(uploader, settings) };
}

function uploadObservability(uploader: Uploader, settings: UploadSettings): Upload["observability"] {
  const { stats } = uploader;
  const oldestAgeSeconds = () => (stats.oldestPendingSince > 0 ? Math.max(0, (Date.now() - stats.oldestPendingSince) / 1000) : 0);
  return {
    register(registry) {
      const gauge = (name: string, help: string, read: () => number) =>
        new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
      const counter = (name: string, help: string, read: () => number) =>
        new Counter({ name, help, registers: [registry], collect() { this.reset(); this.inc(read()); } });
      gauge("xtrader_upload_pending_files", "Closed files waiting for upload (durably recorded)", () => stats.pendingFiles);
      gauge("xtrader_upload_pending_bytes", "Bytes of closed files waiting for upload", () => stats.pendingBytes);
      gauge("xtrader_upload_max_local_bytes", "Bound of the bytes waiting for upload (--max-local-bytes); above it the pipeline is held", () => settings.maxLocalBytes);
      gauge("xtrader_upload_oldest_pending_seconds", "Age of the oldest file waiting for upload (0 when none)", oldestAgeSeconds);
      counter("xtrader_upload_files_total", "Files uploaded and verified", () => stats.uploadedFiles);
      counter("xtrader_upload_bytes_total", "Bytes uploaded and verified", () => stats.uploadedBytes);
      counter("xtrader_upload_failures_total", "Failed upload attempts (each retried; the file stays local)", () => stats.failures);
    },
    readinessProblem() {
      const age = oldestAgeSeconds();
      return age > settings.unreadyAfterSeconds
        ? `upload: the oldest of ${stats.pendingFiles} file(s) waiting for upload closed ${age.toFixed(0)} s ago (limit ${settings.unreadyAfterSeconds} s, XTRADER_UPLOAD_UNREADY_AFTER_SECONDS)`
        : undefined;
    },
  };
}
