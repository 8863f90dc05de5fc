/**
 * The QuestDB sink's files, in `<output directory>/questdb/` (created when first needed), both plain ILP
 * that QuestDB accepts as it is:
 * - `pending-<time>-<pid>.ilp`: rows a stop could not deliver (QuestDB away). Written whole to a
 *   temporary name, synced and renamed, so a file that exists is complete; the next start sends its
 *   rows before any new one and deletes it once they are sent.
 * - `refused.ilp`: rows QuestDB refuses (a table whose columns do not match, see index.ts), appended as
 *   they are set aside, so they can be sent again once the table is fixed
 *   (`curl -X POST --data-binary @refused.ilp 'http://questdb:9000/write'`).
 * One directory per collector: a start replays every pending file it finds there.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync, appendFileSync } from "node:fs";
import { join } from "node:path";

const PENDING = /^pending-\d+-\d+\.ilp$/;

export class SinkFiles {
  readonly directory: string;

  constructor(root: string) {
    this.directory = join(root, "questdb");
  }

  get refusedPath(): string {
    return join(this.directory, "refused.ilp");
  }

  /** Appends refused lines; throws when the file cannot be written. */
  appendRefused(bytes: Uint8Array): void {
    mkdirSync(this.directory, { recursive: true });
    appendFileSync(this.refusedPath, bytes);
  }

  /** Writes the chunks to a new pending file (complete or absent, synced); returns its path; throws on failure. */
  savePending(chunks: readonly Uint8Array[]): string {
    mkdirSync(this.directory, { recursive: true });
    const name = `pending-${Date.now()}-${process.pid}.ilp`;
    const path = join(this.directory, name);
    const temporary = `${path}.tmp`;
    const fd = openSync(temporary, "w");
    try {
      for (const chunk of chunks) {
        let offset = 0;
        while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset);
      }
      fsyncSync(fd);
    } catch (error) {
      closeSync(fd);
      try {
        unlinkSync(temporary);
      } catch {
        // nothing more to do: the error below is what matters
      }
      throw error;
    }
    closeSync(fd);
    renameSync(temporary, path);
    syncDirectory(this.directory);
    return path;
  }

  /** Pending files left by earlier stops, oldest first. */
  pendingFiles(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.directory);
    } catch {
      return [];
    }
    return names
      .filter((name) => PENDING.test(name))
      .sort((a, b) => Number(a.split("-")[1]) - Number(b.split("-")[1]) || a.localeCompare(b))
      .map((name) => join(this.directory, name));
  }

  read(path: string): Uint8Array {
    return new Uint8Array(readFileSync(path));
  }

  remove(path: string): void {
    unlinkSync(path);
  }
}

/** A rename is durable once the directory entry is: fsync the directory (best effort where unsupported). */
function syncDirectory(directory: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(directory, "r");
    fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on a directory; the file itself is synced
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
