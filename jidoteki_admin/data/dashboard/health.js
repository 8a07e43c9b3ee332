// The health bar shown on every page: CPU load, memory and disk from GET /health, red at the
// original dashboard's limits, and marked in words too (not by colour alone). It is not a
// live region: a refresh every 15 s is no news to announce.

import {h, fill} from "./dom.js";
import {size} from "./format.js";

export const MEMORY_LIMIT = 90; // percent
export const DISK_LIMIT = 98; // percent
const POLL_MS = 15000;

/** Which figures are over their limit: cpu5min at or above the cores, disk 98 %, memory 90 %. */
export function healthAlerts(health) {
  const cpu = health?.cpu || {};
  const cores = Number(cpu.num) || 1;
  return {
    cpu: typeof cpu.cpu5min === "number" && cpu.cpu5min >= cores,
    memory: Number(health?.memory?.percentage) >= MEMORY_LIMIT,
    disk: Number(health?.disk?.percentage) >= DISK_LIMIT,
  };
}

function meter(name, label, percent, detail, alert) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  const bar = h("span", {class: "meter-fill"});
  bar.style.width = `${value}%`;
  return h("div", {class: alert ? "meter alert" : "meter", "data-figure": name,
    title: alert ? `${label} is over its limit` : label},
  h("span", {class: "meter-label"}, label,
    alert ? h("span", {class: "over-mark"}, h("span", {"aria-hidden": "true"}, " ▲"),
      h("span", {class: "visually-hidden"}, " over its limit")) : null),
  h("span", {class: "meter-track", "aria-hidden": "true"}, bar),
  h("span", {class: "meter-value"}, detail));
}

/** The bar's content for a /health answer. */
export function healthFigures(health) {
  const alerts = healthAlerts(health);
  const cpu = health.cpu || {};
  const cores = Number(cpu.num) || 1;
  const loadPercent = Math.round(100 * (Number(cpu.cpu5min) || 0) / cores);
  return [
    meter("cpu", "CPU", loadPercent, `${cpu.cpu5min ?? "?"} / ${cores} cores`, alerts.cpu),
    meter("memory", "Memory", health.memory?.percentage,
      `${health.memory?.percentage ?? "?"} % of ${size(health.memory?.total) || "?"}`, alerts.memory),
    meter("disk", "Disk", health.disk?.percentage,
      `${health.disk?.percentage ?? "?"} % of ${size(health.disk?.total) || "?"}`, alerts.disk),
  ];
}

/** The bar: polls /health while the dashboard is open. Without an answer the last figures
 * stay, marked stale (the page's connection notice says why). */
export function healthBar(api) {
  const element = h("div", {class: "health", role: "group", "aria-label": "Appliance health"});
  let timer = null;
  const refresh = async () => {
    try {
      const health = await api.json("/health");
      const alerts = healthAlerts(health);
      element.classList.toggle("alert", alerts.cpu || alerts.memory || alerts.disk);
      element.classList.remove("stale");
      fill(element, healthFigures(health));
    } catch {
      element.classList.add("stale");
    }
  };
  element.start = () => {
    refresh();
    timer = setInterval(refresh, POLL_MS);
  };
  element.stop = () => clearInterval(timer);
  element.refresh = refresh;
  return element;
}
