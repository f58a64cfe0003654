// Time series with ECharts (npm echarts, served from /vendor). Tooltips are drawn on the
// canvas (renderMode richText), so series names never become HTML.
import * as echarts from "/vendor/echarts/dist/echarts.esm.min.mjs";

// Headless test browsers get no animation (a screenshot must not catch a chart mid-way).
const animation = !navigator.webdriver;

export function seriesChart(el, bins, series, { onRange, stacked = false, unit = "bytes" } = {}) {
  const chart = echarts.init(el, null, { renderer: "canvas" });
  chart.setOption({
    animation,
    tooltip: { trigger: "axis", renderMode: "richText" },
    legend: { type: "scroll", top: 0 },
    grid: { left: 70, right: 20, top: 30, bottom: 40 },
    xAxis: { type: "time" },
    yAxis: { type: "value", name: unit },
    brush: onRange ? { xAxisIndex: 0, brushType: "lineX", brushMode: "single",
      throttleType: "debounce", throttleDelay: 300 } : undefined,
    toolbox: onRange ? { feature: { brush: { type: ["lineX", "clear"] } }, right: 10 } : undefined,
    series: series.map((s) => ({
      name: s.name, type: "line", showSymbol: false, stack: stacked ? "all" : undefined,
      areaStyle: stacked ? {} : undefined, data: bins.map((b, i) => [b, s.values[i]]),
    })),
  });
  if (onRange) {
    // Dragging across the chart selects a range at once; its ends become the page's window.
    chart.dispatchAction({ type: "takeGlobalCursor", key: "brush",
      brushOption: { brushType: "lineX", brushMode: "single" } });
    chart.on("brushEnd", (ev) => {
      const range = ev.areas?.[0]?.coordRange;
      if (range) onRange(new Date(range[0]).toISOString(), new Date(range[1]).toISOString());
    });
  }
  new ResizeObserver(() => chart.resize()).observe(el);
  el.dataset.rendered = String(bins.length);
  return chart;
}

// A bin width (seconds) giving about `target` points over [first, last].
export function binFor(first, last, target = 120) {
  const span = (Date.parse(last) - Date.parse(first)) / 1000;
  const steps = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400];
  return steps.find((s) => span / s <= target) || steps[steps.length - 1];
}
