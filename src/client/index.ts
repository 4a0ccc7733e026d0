// Public entry of "sota-db/client": the client factory, and the generated
// messages and enums its calls take and return, so a consumer needs nothing
// else from this package.
export { createDatabaseClient, type DatabaseClient, type DatabaseClientOptions } from "./database-client.js";
export * from "../../gen/sota/database/v1/database_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
