// The Docker driver's WAL archive names and arithmetic, without an engine:
// what is recognised in an archive listing (everything else is ignored), the
// segment an LSN falls in, generation ids, and recovery_target_time's form.
import { describe, expect, it } from "vitest";
import { recoveryTargetTime } from "../../src/runtime/docker/recovery-volume.js";
import { parseListing } from "../../src/runtime/docker/wal-archive.js";
import { archivedFile, checkGeneration, checkWalFileName, nextGenerationId, segmentOf } from "../../src/runtime/docker/wal-names.js";
import { RuntimeError } from "../../src/runtime/runtime.js";

describe("Docker WAL archive names", () => {
  it("names the segment an LSN falls in, for any segment size", () => {
    expect(segmentOf("0/2000028", 1, 16 * 1024 * 1024)).toBe("000000010000000000000002");
    expect(segmentOf("16/B374D848", 3, 16 * 1024 * 1024)).toBe("0000000300000016000000B3");
    expect(segmentOf("1/FFFFFFFF", 2, 16 * 1024 * 1024)).toBe("0000000200000001000000FF");
    expect(segmentOf("0/41000000", 1, 64 * 1024 * 1024)).toBe("000000010000000000000010");
    expect(() => segmentOf("0/../x", 1, 16 * 1024 * 1024)).toThrow(RuntimeError);
    expect(() => segmentOf("0/1", 0, 16 * 1024 * 1024)).toThrow(RuntimeError);
  });

  it("opens generations one second apart at least, whatever the clock says", () => {
    const now = new Date("2026-11-30T12:00:00.900Z");
    expect(nextGenerationId([], now)).toBe("20261130T120000Z");
    expect(nextGenerationId(["20261130T115959Z"], now)).toBe("20261130T120000Z");
    expect(nextGenerationId(["20261130T120000Z"], now)).toBe("20261130T120001Z");
    // A clock set back: still after the newest.
    expect(nextGenerationId(["20261201T000000Z", "not-a-generation"], now)).toBe("20261201T000001Z");
  });

  it("accepts only generation ids and WAL file names of PostgreSQL's shapes", () => {
    expect(() => checkGeneration("20261130T120000Z")).not.toThrow();
    for (const bad of ["../wal", "20261130T120000Z/..", "20261130t120000z", ""]) expect(() => checkGeneration(bad)).toThrow(RuntimeError);
    expect(() => checkWalFileName("000000010000000000000002")).not.toThrow();
    expect(() => checkWalFileName("00000002.history")).not.toThrow();
    for (const bad of ["../../pgdata/PG_VERSION", "000000010000000000000002.partial", "00000001000000000000000g", "x.history"]) {
      expect(() => checkWalFileName(bad)).toThrow(RuntimeError);
    }
    expect(archivedFile("000000010000000000000004.partial")).toEqual({ name: "000000010000000000000004", complete: false });
    expect(archivedFile("00000002.history")).toEqual({ name: "00000002.history", complete: true });
    expect(archivedFile("000000010000000000000004.partial.tmp")).toBeUndefined();
  });

  it("reads a listing into generations oldest first, ignoring what is not WAL", () => {
    const listing = [
      "D 20261201T081500Z",
      "F 16777216 1796040100 20261201T081500Z/000000020000000000000009.partial",
      "F 42 1796040000 20261201T081500Z/00000002.history",
      "D 20261130T120000Z",
      "F 16777216 1796000000.123 20261130T120000Z/000000010000000000000004.partial",
      "F 16777216 1795990000 20261130T120000Z/000000010000000000000003",
      "F 5 1796000000 20261130T120000Z/planted",
      "F 5 1796000000 unknown/000000010000000000000001",
      "D 20261202T000000Z",
      "junk",
    ].join("\n");
    const generations = parseListing(listing);
    expect(generations.map((generation) => generation.id)).toEqual(["20261130T120000Z", "20261201T081500Z", "20261202T000000Z"]);
    expect(generations[0]).toEqual({
      id: "20261130T120000Z",
      bytes: 2 * 16777216,
      lastReceivedAt: new Date(1796000000123),
      segments: [
        { name: "000000010000000000000003", complete: true, bytes: 16777216 },
        { name: "000000010000000000000004", complete: false, bytes: 16777216 },
      ],
    });
    expect(generations[1]?.segments.map((segment) => segment.name)).toEqual(["00000002.history", "000000020000000000000009"]);
    expect(generations[2]).toMatchObject({ bytes: 0, lastReceivedAt: null, segments: [] });
  });

  it("writes recovery_target_time in the form PostgreSQL's check accepts (no ISO 8601 T or Z)", () => {
    expect(recoveryTargetTime(new Date("2026-11-30T12:00:00.123Z"))).toBe("2026-11-30 12:00:00.123+00");
  });
});
