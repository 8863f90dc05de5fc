/**
 * Uploads every closed file to object storage under its path relative to the output directory (the
 * instance identity added to the file name), verifies it against what the store reports, then deletes
 * the local copy (unless keepLocal). Pending uploads are durable records (records.ts): resumed at start,
 * never uploaded under two names, never deleted before verified.
 *
 * Verification: the object's size and ETag must match the file. S3 reports the MD5 of the bytes as the
 * ETag of a single-part upload and `MD5(MD5(part 1) ‖ … ‖ MD5(part n))-n` for a multipart upload; both are
 * computed while reading the file, with the part size the upload used. Stores that report the MD5 of the
 * whole object for multipart uploads (s3rver, some S3-compatible servers) match the first form.
 *
 * Failures (store away, 5xx, SlowDown, a cut connection, a failed verification) are counted, logged once
 * per episode and retried with exponential backoff per file; the file stays pending meanwhile. The
 * bytes waiting are bounded by maxLocalBytes: above it `room()` makes the sink hold the pipeline, so the
 * pipeline's overflow policy applies (drops counted, marked with gap rows).
 */
import { createHash } from "node:crypto";
import { readdir, stat, unlink } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import { errorMessage } from "../core/errors.ts";
import { FaultLog } from "../core/fault-log.ts";
import type { Logger } from "../core/log.ts";
import { UPLOAD_STATE_DIRECTORY, UploadRecords, type UploadRecord } from "./records.ts";
import type { UploadSettings } from "./settings.ts";
import type { ObjectStore, StoredObject } from "./store.ts";

/** Multipart part size: 8 MiB parts allow objects up to 80 GB (S3's 10,000 parts) at 16 MiB in flight. */
export const UPLOAD_PART_BYTES = 8 * 1024 * 1024;
/** Files uploaded at once. */
const CONCURRENT_UPLOADS = 2;
const RETRY_MIN_MS = 1000;
/**
 * A request that never answers (a black-holed connection) must not hold its file forever: a metadata
 * request gets this long, an upload this plus a second per MiB (a floor of 1 MiB/s).
 */
const REQUEST_TIMEOUT_MS = 60_000;
const RETRY_MAX_MS = 60_000;

export interface UploaderStats {
  pendingFiles: number;
  pendingBytes: number;
  uploadedFiles: number;
  uploadedBytes: number;
  /** Failed attempts (each retried). */
  failures: number;
  /** Wall-clock ms of the oldest pending file's close, 0 when none is pending. */
  oldestPendingSince: number;
}

interface PendingFile {
  record: UploadRecord;
  attempts: number;
  retryAt: number;
}

export interface UploaderOptions {
  readonly root: string;
  readonly settings: Pick<UploadSettings, "keepLocal" | "maxLocalBytes" | "instanceId">;
  readonly store: ObjectStore;
  readonly log: Logger;
  readonly now?: () => number;
  /** Backoff bounds, lowered by tests. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
}

/** The object key of a file: its relative path with the instance identity (and a collision suffix) before `.parquet`. */
export function objectKeyOf(path: string, instanceId: string, collision = 0): string {
  const name = basename(path);
  const dot = name.lastIndexOf(".");
  const [stem, extension] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  const directory = dirname(path);
  const suffix = collision > 0 ? `-${collision + 1}` : "";
  return `${directory === "." ? "" : `${directory}/`}${stem}-${instanceId}${suffix}${extension}`;
}

/** The ETags a store may report for these bytes (single-part MD5, multipart MD5 of part MD5s). */
export async function expectedEtags(path: string, partSize: number): Promise<{ size: number; etags: string[] }> {
  const whole = createHash("md5");
  const partDigests: Buffer[] = [];
  let part = createHash("md5");
  let inPart = 0;
  let size = 0;
  for await (const chunk of Bun.file(path).stream()) {
    whole.update(chunk);
    size += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(partSize - inPart, chunk.length - offset);
      part.update(chunk.subarray(offset, offset + take));
      inPart += take;
      offset += take;
      if (inPart === partSize) {
        partDigests.push(part.digest());
        part = createHash("md5");
        inPart = 0;
      }
    }
  }
  if (inPart > 0) partDigests.push(part.digest());
  const etags = [whole.digest("hex")];
  if (partDigests.length > 0) etags.push(`${createHash("md5").update(Buffer.concat(partDigests)).digest("hex")}-${partDigests.length}`);
  return { size, etags };
}

class VerificationError extends Error {}

export class Uploader {
  readonly stats: UploaderStats = { pendingFiles: 0, pendingBytes: 0, uploadedFiles: 0, uploadedBytes: 0, failures: 0, oldestPendingSince: 0 };
  private readonly records: UploadRecords;
  private readonly pending = new Map<string, PendingFile>();
  private readonly active = new Set<string>();
  private readonly faults: FaultLog;
  private readonly now: () => number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private roomWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private running = false;
  /** An upload failed and none has succeeded since. */
  private failing = false;
  /** The start's search for files without a record (drain waits for it). */
  private scanning: Promise<void> = Promise.resolve();
  private readonly recordingPaths = new Map<string, Promise<void>>();
  /** Records being written for newly closed files (a stop waits for them). */
  private readonly recording = new Set<Promise<void>>();

  constructor(private readonly options: UploaderOptions) {
    this.records = new UploadRecords(options.root);
    this.faults = new FaultLog(options.log);
    this.now = options.now ?? Date.now;
  }

  /**
   * Resumes pending records and starts uploading; then, without holding up the start (an archive being
   * put under upload may hold many files, each recorded with an fsync), records every finished file that
   * has no record yet.
   */
  async start(): Promise<void> {
    this.running = true;
    const known = new Set<string>();
    for (const record of await this.records.all()) {
      known.add(record.path);
      if (record.state === "pending") this.enqueue(record);
    }
    if (this.pending.size > 0) this.options.log.info(`upload: resuming ${this.pending.size} upload(s) of a previous run (${this.stats.pendingBytes} bytes)`);
    this.kick();
    this.scanning = this.recordUnknownFiles(known).catch((error: unknown) => {
      this.stats.failures++;
      this.options.log.error(`upload: looking for files not uploaded yet under ${this.options.root} failed (${errorMessage(error)}); the next start looks again`);
    });
  }

  private async recordUnknownFiles(known: ReadonlySet<string>): Promise<void> {
    let found = 0;
    for (const path of await finishedFiles(this.options.root)) {
      if (known.has(path) || this.pending.has(path)) continue;
      try {
        await this.record(path);
      } catch (error) {
        // Closed, uploaded and deleted since the directory was listed.
        if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw error;
      }
      found++;
      this.kick();
    }
    if (found > 0) this.options.log.info(`upload: ${found} file(s) in the output directory were not uploaded yet; uploading them`);
  }

  /** A file the sink finished (its final path). */
  fileClosed(absolutePath: string): void {
    const path = relative(this.options.root, absolutePath).split(sep).join("/");
    if (this.pending.has(path)) return;
    const recording = this.record(path)
      .then(() => this.kick())
      .catch((error: unknown) => {
        this.stats.failures++;
        // The file stays in the output directory: the next start finds it and records it then.
        this.faults.report("record", `upload: cannot record ${path} for upload (${errorMessage(error)}); it is uploaded after the next start`, "error");
      })
      .finally(() => this.recording.delete(recording));
    this.recording.add(recording);
  }

  /** Undefined while the backlog is within maxLocalBytes; else resolves once it is again. */
  room(): Promise<void> | undefined {
    if (this.stats.pendingBytes <= this.options.settings.maxLocalBytes) return undefined;
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Uploads until nothing is pending or `timeoutMs` passed; says how many files are left. */
  async drain(timeoutMs: number): Promise<number> {
    const deadline = this.now() + timeoutMs;
    // The start's search may still be recording an archive's files: wait for it within the same bound.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all([this.scanning, ...this.recording]),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    for (const file of this.pending.values()) file.retryAt = Math.min(file.retryAt, this.now());
    this.kick();
    while (this.pending.size > 0 && this.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve);
        setTimeout(resolve, Math.min(250, Math.max(1, deadline - this.now())));
      });
    }
    return this.pending.size;
  }

  /** Stops starting uploads (running ones finish or fail on their own); records stay for the next start. */
  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    for (const resolve of this.roomWaiters.splice(0)) resolve();
  }

  /** Records a file for upload; a file being recorded already (closed while the start's search runs) is recorded once. */
  private record(path: string): Promise<void> {
    const running = this.recordingPaths.get(path);
    if (running) return running;
    const recording = (async () => {
      const size = (await stat(join(this.options.root, path))).size;
      const record: UploadRecord = { path, key: objectKeyOf(path, this.options.settings.instanceId), size, closedAt: this.now(), state: "pending" };
      await this.records.write(record);
      this.enqueue(record);
    })().finally(() => this.recordingPaths.delete(path));
    this.recordingPaths.set(path, recording);
    return recording;
  }

  private enqueue(record: UploadRecord): void {
    this.pending.set(record.path, { record, attempts: 0, retryAt: 0 });
    this.recount();
  }

  private recount(): void {
    let bytes = 0;
    let oldest = 0;
    for (const { record } of this.pending.values()) {
      bytes += record.size;
      if (oldest === 0 || record.closedAt < oldest) oldest = record.closedAt;
    }
    this.stats.pendingFiles = this.pending.size;
    this.stats.pendingBytes = bytes;
    this.stats.oldestPendingSince = oldest;
    if (bytes <= this.options.settings.maxLocalBytes) for (const resolve of this.roomWaiters.splice(0)) resolve();
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Starts uploads that are due, and arms the timer for the next retry. */
  private kick(): void {
    if (!this.running) return;
    clearTimeout(this.timer);
    const now = this.now();
    let nextRetry = Number.POSITIVE_INFINITY;
    // Oldest first: the backlog's age is what /readyz watches.
    const due = [...this.pending.values()].filter((file) => !this.active.has(file.record.path)).sort((a, b) => a.record.closedAt - b.record.closedAt);
    for (const file of due) {
      if (this.active.size >= CONCURRENT_UPLOADS) break;
      if (file.retryAt > now) {
        nextRetry = Math.min(nextRetry, file.retryAt);
        continue;
      }
      this.active.add(file.record.path);
      void this.upload(file).finally(() => {
        this.active.delete(file.record.path);
        this.recount();
        this.kick();
      });
    }
    if (Number.isFinite(nextRetry)) {
      this.timer = setTimeout(() => this.kick(), Math.max(10, nextRetry - now));
      this.timer.unref?.();
    }
  }

  private async upload(file: PendingFile): Promise<void> {
    const { root, store, settings, log } = this.options;
    const localPath = join(root, file.record.path);
    try {
      const local = await expectedEtags(localPath, UPLOAD_PART_BYTES).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return undefined;
        throw error;
      });
      if (local === undefined) {
        await this.localCopyGone(file);
        return;
      }
      // A key taken by other bytes (a name reused after its first file was uploaded and deleted, or an
      // instance identity given twice) moves this file to the next free key, recorded before the upload.
      for (let collision = 0; ; collision++) {
        const existing = await withTimeout(store.stat(file.record.key), REQUEST_TIMEOUT_MS, "asking the store for the object");
        if (existing === undefined) break;
        if (matches(existing, local)) {
          await this.finish(file, localPath, true);
          return;
        }
        const key = objectKeyOf(file.record.path, settings.instanceId, collision + 1);
        log.warn(`upload: ${file.record.key} already holds other bytes; ${file.record.path} goes to ${key}`);
        file.record = { ...file.record, key };
        await this.records.write(file.record);
      }
      await withTimeout(store.put(file.record.key, localPath, UPLOAD_PART_BYTES), REQUEST_TIMEOUT_MS + local.size / 1024, "the upload");
      const stored = await withTimeout(store.stat(file.record.key), REQUEST_TIMEOUT_MS, "asking the store for the object");
      if (stored === undefined || !matches(stored, local)) {
        throw new VerificationError(
          `the store reports ${stored ? `${stored.size} bytes, ETag ${stored.etag}` : "no object"}, the file has ${local.size} bytes, ETag ${local.etags.join(" or ")}`,
        );
      }
      await this.finish(file, localPath, false);
    } catch (error) {
      file.attempts++;
      this.stats.failures++;
      this.failing = true;
      const delay = Math.min(this.options.retryMaxMs ?? RETRY_MAX_MS, (this.options.retryMinMs ?? RETRY_MIN_MS) * 2 ** Math.min(file.attempts - 1, 16));
      file.retryAt = this.now() + delay;
      const what = error instanceof VerificationError ? "verification failed" : "failed";
      this.faults.report(
        "upload",
        () => `upload: ${file.record.path} → ${file.record.key} ${what} (${errorMessage(error)}); kept locally, retrying (${this.pending.size} file(s) waiting)`,
        "warn",
      );
    }
  }

  /** Verified in the store: keep or delete the local copy, then settle the record. */
  private async finish(file: PendingFile, localPath: string, foundInStore: boolean): Promise<void> {
    if (this.options.settings.keepLocal) {
      await this.records.write({ ...file.record, state: "uploaded" });
    } else {
      await unlink(localPath).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw error;
      });
      await this.records.remove(file.record.path);
    }
    this.pending.delete(file.record.path);
    this.stats.uploadedFiles++;
    this.stats.uploadedBytes += file.record.size;
    if (this.failing) {
      this.failing = false;
      this.options.log.info(`upload: ${file.record.key} uploaded; uploads work again (${this.pending.size} file(s) waiting)`);
    }
    this.options.log.debug(`upload: ${file.record.path} → ${file.record.key} ${foundInStore ? "was already in the store" : "uploaded and verified"}`);
  }

  /** The record is pending but the file is gone: a run killed after deleting it, or someone removed it. */
  private async localCopyGone(file: PendingFile): Promise<void> {
    const stored = await withTimeout(this.options.store.stat(file.record.key), REQUEST_TIMEOUT_MS, "asking the store for the object");
    if (stored !== undefined && stored.size === file.record.size) {
      // Verified before the deletion that the killed run did not get to record.
      await this.records.remove(file.record.path);
      this.pending.delete(file.record.path);
      return;
    }
    this.options.log.error(
      `upload: ${file.record.path} was removed from the output directory before it was uploaded (${file.record.size} bytes); it is not in the store`,
    );
    await this.records.remove(file.record.path);
    this.pending.delete(file.record.path);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} got no answer within ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function matches(stored: StoredObject, local: { size: number; etags: string[] }): boolean {
  return stored.size === local.size && local.etags.includes(stored.etag.toLowerCase());
}

/** Finished data files under the output directory: `*.parquet` outside hidden directories (work, upload state). */
async function finishedFiles(root: string, directory = root): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(directory, { withFileTypes: true })) {
    if (entry.name.startsWith(".") || entry.name === UPLOAD_STATE_DIRECTORY) continue;
    const path = join(directory, entry.name);
    if (entry.isDirectory()) found.push(...(await finishedFiles(root, path)));
    else if (entry.isFile() && entry.name.endsWith(".parquet")) found.push(relative(root, path).split(sep).join("/"));
  }
  return found;
}
