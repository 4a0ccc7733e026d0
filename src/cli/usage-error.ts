// A mistake in how the CLI was called (missing token, bad flag value): exit
// code 2, like commander's own usage errors, and no call is made.
export class UsageError extends Error {
  override readonly name = "UsageError";
}
