// Home: the tenant's quota use, flows per day in its scope, top talkers, and (operators) the
// collector's live counters per exporter.
import { seriesChart } from "../chart.js";
import { api, errorBox, fmt, h, section, table } from "../lib.js";

async function part(root, title, load) {
  const box = section(title, h("p", { class: "muted" }, "loading…"));
  root.append(box);
  try {
    box.lastChild.replaceWith(await load());
  } catch (err) {
    box.lastChild.replaceWith(errorBox(err));
  }
}

export async function render(root, signal) {
  root.append(h("h1", {}, "Overview"));
  await part(root, "Quota use today", async () => {
    const u = await api("/v1/usage", {}, { signal });
    return h("dl", { class: "identity" },
      h("dt", {}, "tenant"), h("dd", {}, `${u.tenant} (${u.role})`),
      h("dt", {}, "lookups"), h("dd", {}, `${fmt(u.used.lookups)} of ${fmt(u.quotas.lookups_per_day)}`),
      h("dt", {}, "rows"), h("dd", {}, `${fmt(u.used.rows)} of ${fmt(u.quotas.rows_per_day)}`),
      h("dt", {}, "widest window"), h("dd", {}, `${u.quotas.max_window_days} days`),
      h("dt", {}, "resets in"), h("dd", {}, `${fmt(u.seconds_to_reset)} s`));
  });
  if (["admin", "analyst", "enterprise"].includes(document.querySelector('meta[name="fa-role"]').content)) {
    await part(root, "Flows per day (your scope)", async () => {
      const s = await api("/v1/series", { bin: 86400 }, { signal });
      const box = h("div", { class: "chart", id: "home-series" });
      const total = s.rows.reduce((a, r) => a + r.flows, 0);
      const out = h("div", {}, h("p", {}, `${fmt(s.rows.length)} days, ${fmt(total)} flows`), box);
      queueMicrotask(() => seriesChart(box, s.rows.map((r) => r.bin),
        [{ name: "flows", values: s.rows.map((r) => r.flows) }], { unit: "flows" }));
      return out;
    });
    await part(root, "Top talkers by bytes", async () =>
      table((await api("/v1/top", { by: "ip", order: "bytes", n: 10 }, { signal })).rows));
  }
  if (document.querySelector('meta[name="fa-role"]').content === "admin") {
    await part(root, "Collector", async () => {
      const c = await api("/v1/collector", {}, { signal });
      const exporters = Object.entries(c.status?.exporters || {}).map(([addr, v]) => ({
        exporter: addr, ...(typeof v === "object" ? v : { value: v }) }));
      return h("div", {},
        h("p", {}, c.running ? "running" : "not running", c.error ? ` — ${c.error}` : ""),
        exporters.length ? table(exporters) : h("p", { class: "muted" }, "no exporter counters"));
    });
  }
}
