// An in-memory PortRegistry for driver tests; the service's own is durable (the store).
import type { PortRange, PortRegistry } from "../../src/runtime/port-registry.js";

export class MemoryPortRegistry implements PortRegistry {
  private readonly byProject = new Map<string, number>();

  allocate(projectId: string, range: PortRange, isUsable: (port: number) => boolean = () => true): number {
    const recorded = this.byProject.get(projectId);
    if (recorded !== undefined) return recorded;
    const taken = new Set(this.byProject.values());
    for (let port = range.min; port <= range.max; port++) {
      if (taken.has(port) || !isUsable(port)) continue;
      this.byProject.set(projectId, port);
      return port;
    }
    throw new Error(`no free port left in ${range.min}-${range.max}`);
  }

  release(projectId: string): void {
    this.byProject.delete(projectId);
  }

  /** The port recorded for a project, if any. */
  portOf(projectId: string): number | undefined {
    return this.byProject.get(projectId);
  }
}
