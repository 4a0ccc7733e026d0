// Loading master keys: SOTA_MASTER_KEY (comma-separated base64, newest first),
// else a key file (one base64 key a line, newest first). In the embedded
// default the file is created on first start, mode 0600.
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Keyring, KEY_BYTES } from "./keyring.js";

export interface KeySource {
  /** Value of SOTA_MASTER_KEY, if set. */
  readonly keys?: readonly string[];
  /** Path of the key file. */
  readonly file: string;
  /** Create the key file when absent (only for the default path). */
  readonly createIfMissing: boolean;
}

export interface LoadedKeyring {
  readonly keyring: Keyring;
  /** Set when this start created a new key file. */
  readonly createdFile?: string;
}

export function loadKeyring(source: KeySource): LoadedKeyring {
  if (source.keys && source.keys.length > 0) return { keyring: Keyring.fromBase64(source.keys) };
  if (existsSync(source.file)) {
    const lines = readFileSync(source.file, "utf8")
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line.length > 0 && !line.startsWith("#"));
    return { keyring: Keyring.fromBase64(lines) };
  }
  if (!source.createIfMissing) throw new Error(`master key file ${source.file} does not exist`);
  mkdirSync(dirname(source.file), { recursive: true });
  const key = randomBytes(KEY_BYTES).toString("base64");
  // "wx": never overwrite a key file another process just created.
  writeFileSync(source.file, `${key}\n`, { mode: 0o600, flag: "wx" });
  return { keyring: Keyring.fromBase64([key]), createdFile: source.file };
}
