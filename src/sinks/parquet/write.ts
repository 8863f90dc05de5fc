/** Positional writes and directory syncs shared by the Parquet sink's files and its rows log. */
import { open, type FileHandle } from "node:fs/promises";

export async function writeAll(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, position + written);
    if (bytesWritten <= 0) throw Object.assign(new Error("short write"), { code: "EIO" });
    written += bytesWritten;
  }
}

/** Makes created, renamed and removed names in a directory survive power loss. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
