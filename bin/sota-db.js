#!/usr/bin/env node
// The sota-db CLI. The project runs TypeScript through tsx (as `npm start`
// does), so the bin registers tsx and hands over to src/cli/main.ts.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
