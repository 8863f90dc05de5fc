/**
 * Durable upload records, one small JSON file per closed file under `DIR/.upload/records/` (hidden, so no
 * table glob and no reader sees it). A record is written (temporary file, fsync, rename, fsync of the
 * directory) before the upload starts and fixes the object key the file goes to, so a run killed at any
 * point resumes the same upload under the same name; it is removed only after the store reported the
 * object with the file's size and checksum and the local copy was deleted. With --keep-local the record
 * stays, marked uploaded, so the next start does not upload the file again.
 */
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";

export const UPLOAD_STATE_DIRECTORY = ".upload";

export interface UploadRecord {
  /** The file's path relative to the output directory (forward slashes). */
  readonly path: string;
  /** Object key relative to the upload prefix. */
  readonly key: string;
  readonly size: number;
  /** Wall-clock ms when the file was recorded as closed (the age of the backlog counts from here). */
  readonly closedAt: number;
  readonly state: "pending" | "uploaded";
}

export class UploadRecords {
  readonly directory: string;
  private writes = 0;

  constructor(root: string) {
    this.directory = join(root, UPLOAD_STATE_DIRECTORY, "records");
    mkdirSync(this.directory, { recursive: true });
  }

  private fileOf(path: string): string {
    return join(this.directory, `${createHash("sha256").update(path).digest("hex").slice(0, 40)}.json`);
  }

  async read(path: string): Promise<UploadRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.fileOf(path), "utf8")) as UploadRecord;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  }

  /** Every record; a torn temporary file of a killed write is removed (its record was never in effect). */
  async all(): Promise<UploadRecord[]> {
    const records: UploadRecord[] = [];
    for (const name of await readdir(this.directory)) {
      const file = join(this.directory, name);
      if (name.endsWith(".tmp")) {
        await unlink(file).catch(() => undefined);
        continue;
      }
      if (!name.endsWith(".json")) continue;
      records.push(JSON.parse(await readFile(file, "utf8")) as UploadRecord);
    }
    return records;
  }

  /** Writes the record so that it survives a crash the moment this resolves. */
  async write(record: UploadRecord): Promise<void> {
    const file = this.fileOf(record.path);
    // Unique per write: two writes of one record never share a temporary file.
    const temporary = `${file}.${process.pid}-${++this.writes}.tmp`;
    const handle = await open(temporary, "w");
    try {
      await handle.writeFile(JSON.stringify(record));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
    await this.syncDirectory();
  }

  async remove(path: string): Promise<void> {
    await unlink(this.fileOf(path)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "ENOENT") throw error;
    });
  }

  private async syncDirectory(): Promise<void> {
    const handle = await open(this.directory, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
