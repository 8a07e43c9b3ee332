// Monitor: CPU load, memory, disk and network traffic over time, from GET /health/history
// (kept by the appliance for a year), or from this page's own samples where it has none.
// Each chart has its current value beside it, its limit labelled, and a read-out of any
// moment under the pointer, a finger or the arrow keys.

import {h, card, fill, message} from "./dom.js";
import {lineChart} from "./chart.js";
import {MEMORY_LIMIT, DISK_LIMIT} from "./health.js";
import {sentence} from "./words.js";

export const RANGES = [
  {id: "hour", title: "Last hour", seconds: 3600},
  {id: "day", title: "Last day", seconds: 86400},
  {id: "week", title: "Last week", seconds: 7 * 86400},
  {id: "month", title: "Last month", seconds: 30 * 86400},
  {id: "year", title: "Last year", seconds: 365 * 86400},
];
const LIVE_MS = 10000;

/** Bytes a second as people read them. */
export function rate(value) {
  if (value === null || value === undefined) return "no sample";
  if (value >= 1e6) return `${(value / 1e6).toFixed(value >= 1e7 ? 0 : 1)} MB/s`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(value >= 1e4 ? 0 : 1)} KB/s`;
  return `${Math.round(value)} B/s`;
}

const percent = (v) => (v === null || v === undefined ? "no sample" : `${Math.round(v)} %`);
const load = (v, decimals = 2) => (v === null || v === undefined ? "no sample" : v.toFixed(decimals));

/** A sample from a /health answer (what the page collects itself). */
export function sampleOf(health, time) {
  return {time, load: health.cpu?.cpu5min ?? null, cores: health.cpu?.num ?? 1,
    memory: health.memory?.percentage ?? null, disk: health.disk?.percentage ?? null, rx: null, tx: null};
}

function latest(samples, key) {
  for (let i = samples.length - 1; i >= 0; i -= 1) {
    const value = samples[i][key];
    if (value !== null && value !== undefined) return value;
  }
  return null;
}

function chartCard(title, now, over, ...content) {
  return h("section", {class: "card chart-card"},
    h("div", {class: "chart-head"}, h("h2", {}, title),
      h("p", {class: over ? "now over" : "now"}, h("span", {class: "visually-hidden"}, "Now: "), now,
        over ? h("span", {class: "over-note"}, " (over the limit)") : null)),
    ...content);
}

/** The four charts for samples [{time, load, memory, disk, rx, tx}] between from and to. */
export function charts(samples, from, to, cores) {
  const points = (key) => samples.map((s) => [s.time, s[key] ?? null]);
  const hasTraffic = samples.some((s) => s.rx !== null && s.rx !== undefined);
  const nowLoad = latest(samples, "load");
  const nowMemory = latest(samples, "memory");
  const nowDisk = latest(samples, "disk");
  return [
    chartCard("CPU load (5 minutes)", nowLoad === null ? "–" : `${load(nowLoad)} of ${cores}`,
      nowLoad !== null && nowLoad >= cores,
      lineChart({label: "CPU load", from, to, limit: cores, limitLabel: `limit: ${cores} core${cores === 1 ? "" : "s"}`,
        series: [{name: "load", points: points("load")}], format: load})),
    chartCard("Memory", percent(nowMemory), nowMemory !== null && nowMemory >= MEMORY_LIMIT,
      lineChart({label: "Memory use", from, to, max: 100, limit: MEMORY_LIMIT, limitLabel: `limit ${MEMORY_LIMIT} %`,
        series: [{name: "memory", points: points("memory")}], format: percent})),
    chartCard("Disk", percent(nowDisk), nowDisk !== null && nowDisk >= DISK_LIMIT,
      lineChart({label: "Disk use", from, to, max: 100, limit: DISK_LIMIT, limitLabel: `limit ${DISK_LIMIT} %`,
        series: [{name: "disk", points: points("disk")}], format: percent})),
    hasTraffic
      ? chartCard("Network traffic", `${rate(latest(samples, "rx"))} in, ${rate(latest(samples, "tx"))} out`, false,
        lineChart({label: "Network traffic", from, to, format: rate,
          series: [{name: "received", points: points("rx")}, {name: "sent", points: points("tx")}]}),
        h("p", {class: "legend"}, h("span", {class: "series-0"}, "received"), h("span", {class: "series-1"}, "sent")))
      : card("Network traffic",
        h("p", {class: "muted"}, "Network traffic is recorded by the appliance's health history, which it does not keep.")),
  ];
}

export async function render({api, onLeave}) {
  let range = RANGES[0];
  const live = [];
  let history = true;
  let cores = 1;
  const area = h("div", {class: "grid charts"});
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
        keepFocus(() => fill(area, charts(answer.samples || [], from, to, cores)));
        return;
      } catch (error) {
        if (error.status === 0) return; // the page's connection notice says so; the charts stay
        if (error.status !== 404) {
          fill(note, message("error", sentence(error)));
          return;
        }
        history = false;
      }
    }
    fill(note, message("info", "This appliance keeps no health history: the charts show what this page has "
      + "sampled since it opened, every 10 seconds."));
    keepFocus(() => fill(area, charts(live.filter((s) => s.time >= from), from, to, cores)));
  }
  // A chart being read with the keyboard keeps the focus when the charts are drawn again.
  function keepFocus(redraw) {
    const charts = [...area.querySelectorAll(".chart-box")];
    const focused = charts.indexOf(document.activeElement);
    redraw();
    if (focused >= 0) area.querySelectorAll(".chart-box")[focused]?.focus({preventScroll: true});
  }
  async function sample() {
    try {
      const health = await api.json("/health");
      cores = health.cpu?.num || cores;
      live.push(sampleOf(health, Date.now() / 1000));
      if (!history) draw();
    } catch {
      // the page's connection notice says when the appliance cannot be reached
    }
  }
  // Every 10 s the charts are drawn again with the new samples, unless one is being read.
  const timer = setInterval(() => {
    if (area.querySelector(".chart-box:hover, .chart-box:focus")) return;
    if (history) draw(); else sample();
  }, LIVE_MS);
  onLeave(() => clearInterval(timer));
  await sample();
  await draw();
  return h("div", {}, h("div", {class: "ranges", role: "group", "aria-label": "Time range"}, buttons), note, area);
}
