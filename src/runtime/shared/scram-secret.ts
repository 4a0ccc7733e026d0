// SCRAM-SHA-256 verifiers (RFC 5802 / RFC 7677) in PostgreSQL's rolpassword
// format, computed here so the plaintext password never reaches PostgreSQL (its
// statement logs, pg_stat_statements) or PgBouncer's files. PostgreSQL stores a
// string in this format as-is, and PgBouncer (>= 1.14) given the same verifier
// in its userlist passes the client's SCRAM proof through to the server.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

const ITERATIONS = 4096;
const KEY_LENGTH = 32;
const VERIFIER = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/;

export function createScramVerifier(password: string): string {
  const salt = randomBytes(16);
  const { storedKey, serverKey } = deriveKeys(password, salt, ITERATIONS);
  return `SCRAM-SHA-256$${ITERATIONS}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/** True when `verifier` is a SCRAM-SHA-256 verifier of exactly this password. */
export function scramVerifierMatches(password: string, verifier: string | null | undefined): boolean {
  const match = verifier ? VERIFIER.exec(verifier) : null;
  if (!match) return false;
  const iterations = Number(match[1]);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 1_000_000) return false;
  const salt = Buffer.from(match[2] ?? "", "base64");
  const expectedStored = Buffer.from(match[3] ?? "", "base64");
  const expectedServer = Buffer.from(match[4] ?? "", "base64");
  const { storedKey, serverKey } = deriveKeys(password, salt, iterations);
  return (
    expectedStored.length === storedKey.length &&
    expectedServer.length === serverKey.length &&
    timingSafeEqual(expectedStored, storedKey) &&
    timingSafeEqual(expectedServer, serverKey)
  );
}

function deriveKeys(password: string, salt: Buffer, iterations: number): { storedKey: Buffer; serverKey: Buffer } {
  // PostgreSQL runs the password through SASLprep first; for the printable
  // ASCII passwords we accept that is the identity, so no normalisation here.
  const salted = pbkdf2Sync(Buffer.from(password, "utf8"), salt, iterations, KEY_LENGTH, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  return {
    storedKey: createHash("sha256").update(clientKey).digest(),
    serverKey: createHmac("sha256", salted).update("Server Key").digest(),
  };
}
