// An in-memory PortRegistry for driver tests; the service's own is durable (the store).
import { firstFreePort, type PortRange, type PortRegistry } from "../../src/store/port-registry.js";

export class MemoryPortRegistry implements PortRegistry {
  private readonly byProject = new Map<string, number>();

  async allocate(projectId: string, range: PortRange, isUsable: (port: number) => boolean = () => true, preferred?: number): Promise<number> {
    const recorded = this.byProject.get(projectId);
    if (recorded !== undefined) return recorded;
    const port = firstFreePort(range, new Set(this.byProject.values()), isUsable, preferred);
    this.byProject.set(projectId, port);
    return port;
  }

  async release(projectId: string): Promise<void> {
    this.byProject.delete(projectId);
  }

  /** The port recorded for a project, if any. */
  portOf(projectId: string): number | undefined {
    return this.byProject.get(projectId);
  }
}
