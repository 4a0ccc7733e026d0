// The process driver's public face: local PostgreSQL + PgBouncer child processes.
export { createProcessRuntime, ProcessRuntime, type ProcessRuntimeOptions } from "./process-runtime.js";
export type { WarmPoolState } from "./reserves/warm-pool.js";
export {
  discoverBinaries,
  type BinaryOverrides,
  type Binaries,
  type PgbouncerBinary,
  type PostgresBinaries,
} from "./host/postgres-binaries.js";
