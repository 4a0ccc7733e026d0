// The alert rules and the Grafana dashboard in deploy/ are valid: the rules
// and every dashboard query parse as PromQL, and the rules' own unit tests
// pass (promtool, from Debian's prometheus package). That their metric names
// exist is checked against a running service in test/e2e/live-figures.test.ts.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const deploy = fileURLToPath(new URL("../../deploy/", import.meta.url));
const promtool = spawnSync("promtool", ["--version"]).status === 0;
if (!promtool) console.warn("promtool not found (apt-get install prometheus): rule checks skipped");

interface Panel {
  readonly title?: string;
  readonly targets?: ReadonlyArray<{ readonly expr?: string }>;
}

const dashboard = JSON.parse(readFileSync(join(deploy, "grafana/sota-db-dashboard.json"), "utf8")) as { uid: string; panels: Panel[] };

describe("deploy/grafana/sota-db-dashboard.json", () => {
  it("is a dashboard with a query in every panel but rows and the alert list", () => {
    expect(dashboard.uid).toBe("sota-db");
    const queried = dashboard.panels.filter((panel) => (panel.targets ?? []).length > 0);
    expect(queried.length).toBeGreaterThan(10);
    for (const panel of queried) for (const target of panel.targets!) expect(target.expr, panel.title).toMatch(/sota_|up\{/);
  });

  it.skipIf(!promtool)("has only queries that parse as PromQL", () => {
    // promtool checks PromQL inside a rules file: each query becomes a recording rule.
    const exprs = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr!.replaceAll("$project_id", ".*")));
    const rules = exprs.map((expr, i) => `      - record: dashboard:query_${i}\n        expr: ${JSON.stringify(expr)}`).join("\n");
    const dir = mkdtempSync(join(tmpdir(), "sota-dashboard-"));
    try {
      writeFileSync(join(dir, "queries.yml"), `groups:\n  - name: dashboard\n    rules:\n${rules}\n`);
      execFileSync("promtool", ["check", "rules", join(dir, "queries.yml")], { stdio: "pipe" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!promtool)("deploy/prometheus/sota-db-alerts.yml", () => {
  it("passes promtool's check", () => {
    const out = execFileSync("promtool", ["check", "rules", join(deploy, "prometheus/sota-db-alerts.yml")], { encoding: "utf8" });
    expect(out).toMatch(/SUCCESS/);
  });

  it("fires as its unit tests expect", () => {
    const out = execFileSync("promtool", ["test", "rules", "sota-db-alerts.test.yml"], { cwd: join(deploy, "prometheus"), encoding: "utf8" });
    expect(out).toMatch(/SUCCESS/);
  });
});
