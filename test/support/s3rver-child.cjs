// A real S3-compatible server (s3rver, from npm) for the tests, run as its own
// process with plain Node: test/support/s3-server.ts starts it, and stops it
// to play an unreachable endpoint. Prints {"port": N} once it listens.
"use strict";
const S3rver = require("s3rver");
const AWSAccount = require("s3rver/lib/models/account");

const { S3_PORT, S3_DIR, S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY } = process.env;
// s3rver knows one account (S3RVER/S3RVER) unless told of more; it does not check SigV4 signatures.
if (S3_ACCESS_KEY_ID) AWSAccount.DUMMY_ACCOUNT.createKeyPair(S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY || S3_ACCESS_KEY_ID);
const server = new S3rver({
  address: "127.0.0.1",
  port: Number(S3_PORT || 0),
  silent: true,
  directory: S3_DIR,
  configureBuckets: S3_BUCKET ? [{ name: S3_BUCKET }] : [],
});
server.run().then(
  (address) => process.stdout.write(`${JSON.stringify({ port: address.port })}\n`),
  (error) => {
    process.stderr.write(`${error && error.message}\n`);
    process.exit(1);
  },
);
process.on("SIGTERM", () => server.close().finally(() => process.exit(0)));
