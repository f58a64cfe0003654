// /ip/ADDRESS (or a prefix): identity, first/last seen, totals in/out, traffic over time (a
// brushed range sets the window), top peers and ports, recent flows; every address and port
// is a pivot.
import { binFor, seriesChart } from "../chart.js";
import {
  api, errorBox, fmt, go, h, params, href, section, table, windowForm,
} from "../lib.js";

const ENRICHMENT = ["as", "as_name", "country", "names", "tags"];

export async function render(root, signal) {
  const target = decodeURIComponent(location.pathname.slice("/ip/".length));
  const p = params();
  const win = { since: p.get("since"), until: p.get("until") };
  const filter = target.includes("/") ? `net ${target}` : `ip ${target}`;
  root.append(h("h1", {}, "Address ", h("span", { class: "target" }, target)),
    windowForm(location.pathname));
  let profile;
  try {
    profile = await api(`/v1/ip/${encodeURIComponent(target).replace(/%2F/g, "/")}`,
      { ...win, n: 10 }, { signal });
  } catch (err) {
    root.append(errorBox(err));
    return;
  }
  const identity = h("dl", { class: "identity" },
    h("dt", {}, "seen"), h("dd", {}, profile.seen ? "yes" : "no flows in this window"),
    h("dt", {}, "first seen"), h("dd", {}, profile.first_seen || "—"),
    h("dt", {}, "last seen"), h("dd", {}, profile.last_seen || "—"));
  // Enrichment (AS, country, names, tags) shows when the API sends it.
  for (const k of ENRICHMENT) {
    if (profile[k] !== undefined && profile[k] !== null) {
      const v = Array.isArray(profile[k]) ? profile[k].join(", ") : profile[k];
      identity.append(h("dt", {}, k.replace("_", " ")), h("dd", {}, v));
    }
  }
  const actions = h("p", { class: "actions" },
    h("a", { href: href("/graph", { seed: target, ...win }) }, "Peer graph"), " · ",
    h("a", { href: href("/trace", { to: target }) }, "Trace a session"), " · ",
    h("a", { href: href("/explore", { filter, ...win }) }, "Explore its flows"));
  root.append(section("Identity", identity, actions),
    section("Totals", table(profile.totals)));
  const chartBox = h("div", { class: "chart", id: "ip-series" });
  root.append(section("Traffic over time", chartBox));
  const grid = h("div", { class: "grid" },
    section("Top peers", table(profile.peers)),
    section("Its ports", table(profile.local_ports)),
    section("Peer ports", table(profile.peer_ports)));
  root.append(grid);
  const flowsBox = section("Recent flows", h("p", { class: "muted" }, "loading…"));
  root.append(flowsBox);
  if (!profile.seen) {
    chartBox.append(h("p", { class: "muted" }, "no traffic"));
    flowsBox.lastChild.replaceWith(h("p", { class: "muted" }, "no flows"));
    return;
  }
  const bin = binFor(profile.first_seen, profile.last_seen);
  const [series, flows] = await Promise.allSettled([
    api("/v1/series", { filter, bin, ...win }, { signal }),
    api("/v1/flows", { filter, limit: 50, ...win }, { signal }),
  ]);
  if (series.status === "fulfilled") {
    const rows = series.value.rows;
    seriesChart(chartBox, rows.map((r) => r.bin), [
      { name: "bytes", values: rows.map((r) => r.bytes) },
    ], { onRange: (since, until) => go(location.pathname, { ...Object.fromEntries(p), since, until }) });
    chartBox.after(h("p", { class: "muted" }, `${fmt(rows.length)} bins of ${bin} s; drag across the chart to narrow the window`));
  } else chartBox.append(errorBox(series.reason));
  flowsBox.lastChild.replaceWith(flows.status === "fulfilled"
    ? table(flows.value.rows, ["time_start", "src_addr", "src_port", "dst_addr", "dst_port",
      "protocol", "packets", "bytes"])
    : errorBox(flows.reason));
}
