import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real PostgreSQL and PgBouncer processes take seconds to start on a 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Each file starts its own servers; running files one at a time keeps a
    // 2-core machine from timing out under the load of many initdb runs.
    fileParallelism: false,
    reporters: ["default"],
  },
});
