// Writes openapi/openapi.json from the code that serves /openapi.json
// (npm run openapi); the e2e test fails while the two differ.
import { writeFileSync } from "node:fs";
import { openApiDocument } from "../src/server/openapi/openapi-document.js";

writeFileSync(new URL("../openapi/openapi.json", import.meta.url), `${JSON.stringify(openApiDocument(), null, 2)}\n`);
