// Monitor: CPU load, memory, disk and network traffic over time, from GET /health/history
// (kept by the appliance for a year), or from this page's own samples where it has none.

import {h, card, fill, message} from "./dom.js";
import {lineChart} from "./chart.js";
import {MEMORY_LIMIT, DISK_LIMIT} from "./health.js";

export const RANGES = [
  {id: "hour", title: "Last hour", seconds: 3600},
  {id: "day", title: "Last day", seconds: 86400},
  {id: "week", title: "Last week", seconds: 7 * 86400},
  {id: "month", title: "Last month", seconds: 30 * 86400},
  {id: "year", title: "Last year", seconds: 365 * 86400},
];
const LIVE_MS = 10000;

function rate(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(value >= 1e7 ? 0 : 1)} MB/s`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(value >= 1e4 ? 0 : 1)} kB/s`;
  return `${Math.round(value)} B/s`;
}

/** A sample from a /health answer (what the page collects itself). */
export function sampleOf(health, time) {
  return {time, load: health.cpu?.cpu5min ?? null, cores: health.cpu?.num ?? 1,
    memory: health.memory?.percentage ?? null, disk: health.disk?.percentage ?? null, rx: null, tx: null};
}

/** The four charts for samples [{time, load, memory, disk, rx, tx}] between from and to. */
export function charts(samples, from, to, cores) {
  const points = (key) => samples.map((s) => [s.time, s[key] ?? null]);
  const hasTraffic = samples.some((s) => s.rx !== null && s.rx !== undefined);
  return [
    card("CPU load (5 minutes)", lineChart({label: "CPU load", from, to, limit: cores,
      series: [{name: "load", points: points("load")}], format: (v) => v.toFixed(v < 10 ? 1 : 0)}),
    h("p", {class: "legend"}, h("span", {class: "series-0"}, "load average"), `limit: ${cores} cores`)),
    card("Memory", lineChart({label: "Memory use", from, to, max: 100, limit: MEMORY_LIMIT,
      series: [{name: "memory", points: points("memory")}], format: (v) => `${Math.round(v)} %`})),
    card("Disk", lineChart({label: "Disk use", from, to, max: 100, limit: DISK_LIMIT,
      series: [{name: "disk", points: points("disk")}], format: (v) => `${Math.round(v)} %`})),
    card("Network traffic", hasTraffic
      ? [lineChart({label: "Network traffic", from, to, format: rate,
        series: [{name: "received", points: points("rx")}, {name: "sent", points: points("tx")}]}),
      h("p", {class: "legend"}, h("span", {class: "series-0"}, "received"), h("span", {class: "series-1"}, "sent"))]
      : h("p", {class: "muted"}, "Network traffic is recorded by the appliance's health history, which it does not keep.")),
  ];
}

export async function render({api, onLeave}) {
  let range = RANGES[0];
  const live = [];
  let history = true;
  let cores = 1;
  const area = h("div", {class: "grid"});
  const note = h("div");
  const buttons = RANGES.map((r) => {
    const button = h("button", {type: "button", class: "button small", "aria-pressed": String(r === range)}, r.title);
    button.addEventListener("click", () => {
      range = r;
      for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
      draw();
    });
    return button;
  });
  async function draw() {
    const to = Date.now() / 1000;
    const from = to - range.seconds;
    if (history) {
      try {
        const answer = await api.json(`/health/history?range=${range.id}`);
        cores = answer.cores || cores;
        fill(note);
        fill(area, charts(answer.samples || [], from, to, cores));
        return;
      } catch (error) {
        if (error.status !== 404) {
          fill(note, message("error", error.message));
          return;
        }
        history = false;
      }
    }
    fill(note, message("info", "This appliance keeps no health history: the charts show what this page has "
      + "sampled since it opened, every 10 seconds."));
    fill(area, charts(live.filter((s) => s.time >= from), from, to, cores));
  }
  async function sample() {
    try {
      const health = await api.json("/health");
      cores = health.cpu?.num || cores;
      live.push(sampleOf(health, Date.now() / 1000));
      if (!history) draw();
    } catch {
      // the health bar says when the appliance cannot be reached
    }
  }
  const timer = setInterval(() => (history ? draw() : sample()), LIVE_MS);
  const narrow = window.matchMedia("(max-width: 760px)");
  narrow.addEventListener("change", draw); // the charts are drawn for the screen's width
  onLeave(() => {
    clearInterval(timer);
    narrow.removeEventListener("change", draw);
  });
  await sample();
  await draw();
  return h("div", {}, h("div", {class: "ranges", role: "group", "aria-label": "Time range"}, buttons), note, area);
}
