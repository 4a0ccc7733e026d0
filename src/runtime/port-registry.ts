// The process runtime's view of the port registry port; the state stores
// implement it (store/port-registry.ts), so the runtime imports down, not the store up.
export type { PortRange, PortRegistry } from "../store/port-registry.js";
