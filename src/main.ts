// The process entry point: read the environment, start the app, stop cleanly
// on SIGTERM/SIGINT. A bad configuration stops the service with one line.
import { loadConfig, ConfigError } from "./config.js";
import { createLogger, loggableError } from "./log.js";
import { startApp } from "./app.js";
import { DataDirInUseError } from "./store/data-dir-lock.js";
import { StateTooNewError } from "./store/migrations.js";
import { SingleReplicaError } from "./coordination/coordination.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`sota-db: invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel });
  let app;
  try {
    app = await startApp(config, { logger });
  } catch (error) {
    if (error instanceof DataDirInUseError || error instanceof StateTooNewError || error instanceof SingleReplicaError) {
      // Another service runs on this data dir or (process runtime) on this shared state, or a newer release wrote the state: nothing was touched, one line says why.
      process.stderr.write(`sota-db: could not start: ${error.message}\n`);
      process.exit(1);
    }
    logger.fatal({ err: loggableError(error) }, "sota-db could not start");
    process.stderr.write(`sota-db: could not start: ${(error as Error).message}\n`);
    process.exit(1);
  }
  if (app.adminTokenFile) {
    process.stderr.write(`sota-db: admin token in ${app.adminTokenFile} (use: Authorization: Bearer $(cat ${app.adminTokenFile}))\n`);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    app
      .close()
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        logger.error({ err: loggableError(error) }, "unclean stop");
        process.exit(1);
      });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

void main();
