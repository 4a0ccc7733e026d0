// The registry is the one table of drivers: SOTA_RUNTIME accepts exactly its
// names, and the app makes whichever is named through it.
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/log.js";
import { RUNTIME_KINDS, runtimeDriver } from "../../src/runtime/registry.js";
import { MemoryPortRegistry } from "../support/memory-port-registry.js";

describe("runtime registry", () => {
  it("lists the drivers SOTA_RUNTIME accepts, the embedded default first", () => {
    expect(RUNTIME_KINDS).toEqual(["process", "docker"]);
    for (const kind of RUNTIME_KINDS) expect(loadConfig({ SOTA_RUNTIME: kind }, "/srv/sota").runtime).toBe(kind);
    expect(() => loadConfig({ SOTA_RUNTIME: "k8s" }, "/srv/sota")).toThrow(ConfigError);
  });

  it("makes the Docker driver without contacting the engine", async () => {
    const config = loadConfig({ SOTA_RUNTIME: "docker", DOCKER_HOST: "unix:///nonexistent/docker.sock" }, "/srv/sota");
    const runtime = await runtimeDriver("docker").create({ config, ports: new MemoryPortRegistry(), logger: createLogger({ level: "silent" }) });
    try {
      expect(runtime.kind).toBe("docker");
      await expect(runtime.ping()).rejects.toThrow();
    } finally {
      await runtime.close();
    }
  });

  it("gives backups a scratch dir beside the databases only where they live on this host", () => {
    const config = loadConfig({}, "/srv/sota");
    expect(runtimeDriver("process").scratchDir?.(config)).toBe("/srv/sota/data");
    expect(runtimeDriver("docker").scratchDir).toBeUndefined();
  });
});
