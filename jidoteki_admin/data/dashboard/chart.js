// Line charts in plain SVG, for the Monitor page, drawn at the size they are shown: one unit
// of the drawing is one pixel of the screen, so the text is as large on a phone as on a
// laptop, and never scaled down below what can be read.

import {h, fill} from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 220;
const PAD = {left: 56, right: 16, top: 14, bottom: 30};
const LABEL_WIDTH = 100; // the room a time label needs on the axis, with a gap
const CHARACTER = 7; // about the width of a character of the 12 px axis text
const MINUTE = 60;
const HOUR = 3600;
const DAY = 86400;
const STEPS = [MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR,
  12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY];
const MONTH_STEPS = [1, 2, 3, 6];

function svg(tag, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

/** A round top for the value axis: 1, 2 or 5 times a power of ten, at least `value`. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/** Round ticks from 0 to at least `top`, about `count` of them: steps of 1, 2, 2.5 or 5
 * times a power of ten (0, 0.5, 1, 1.5 rather than 0, 1.3, 2.5, 3.8). */
export function valueTicks(top, count = 4) {
  const highest = top > 0 ? top : 1;
  const raw = highest / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw * 0.999);
  const ticks = [];
  for (let i = 0; i * step < highest + step * 0.999 && ticks.length <= count + 1; i += 1) {
    ticks.push(Number((i * step).toPrecision(12)));
  }
  return ticks;
}

/** The decimals a tick step needs: 0.25 needs 2, 5 needs none. */
export function decimalsFor(ticks) {
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
  return Math.max(0, Math.min(3, -Math.floor(Math.log10(step) + 1e-9) + (String(step).includes("25") ? 1 : 0)));
}

function startOfDay(seconds) {
  const date = new Date(seconds * 1000);
  date.setHours(0, 0, 0, 0);
  return date.getTime() / 1000;
}

/** Times for the time axis between from and to (seconds), at round local times, at most
 * `most` of them: whole minutes, hours, days (at midnight) or months (on the 1st). */
export function timeTicks(from, to, most) {
  const span = to - from;
  const step = STEPS.find((s) => span / s <= most);
  const ticks = [];
  if (step) {
    let t = step >= DAY ? startOfDay(from) : startOfDay(from) + Math.ceil((from - startOfDay(from)) / step) * step;
    if (step >= DAY) {
      while (t < from) t += DAY; // days begin at local midnight, whatever the clock changes
    }
    for (; t <= to; t = step >= DAY ? startOfDay(t + step + HOUR * 3) : t + step) {
      if (t >= from) ticks.push({time: t, step});
    }
    return ticks;
  }
  const months = MONTH_STEPS.find((m) => span / (m * 30.4 * DAY) <= most) || 12;
  const date = new Date(from * 1000);
  date.setHours(0, 0, 0, 0);
  date.setDate(1);
  date.setMonth(date.getMonth() + 1);
  while (date.getMonth() % months !== 0) date.setMonth(date.getMonth() + 1);
  while (date.getTime() / 1000 <= to) {
    ticks.push({time: date.getTime() / 1000, step: months * 30 * DAY});
    date.setMonth(date.getMonth() + months);
  }
  return ticks;
}

/** The text of a time tick: the hour, with the date at midnight on an axis of more than a
 * day; the day on a week's or a month's; the month (and the year in January) on a year's. */
export function tickLabel({time, step}, span) {
  const date = new Date(time * 1000);
  if (step >= 28 * DAY) {
    return date.getMonth() === 0 ? String(date.getFullYear()) : date.toLocaleDateString([], {month: "short"});
  }
  if (step >= DAY) {
    return span > 10 * DAY ? date.toLocaleDateString([], {day: "numeric", month: "short"})
      : date.toLocaleDateString([], {weekday: "short", day: "numeric", month: "short"});
  }
  if (span > 20 * HOUR && date.getHours() === 0 && date.getMinutes() === 0) {
    return date.toLocaleDateString([], {weekday: "short", day: "numeric", month: "short"});
  }
  return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

/** The moment a read-out is about, as precisely as the range needs. */
export function readoutTime(seconds, span) {
  const date = new Date(seconds * 1000);
  if (span <= 2 * HOUR) return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
  return date.toLocaleString([], {weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"});
}

/** The path of points [[time, value], ...] scaled into a plot of width × height starting at
 * (left, top); gaps (null) break the line. */
export function linePath(points, from, to, max, {left = PAD.left, top = PAD.top, width = 566,
  height = HEIGHT - PAD.top - PAD.bottom} = {}) {
  const span = Math.max(1, to - from);
  let path = "";
  let pen = "M";
  for (const [time, value] of points) {
    if (value === null || value === undefined || Number.isNaN(value)) {
      pen = "M";
      continue;
    }
    const x = left + width * (time - from) / span;
    const y = top + height * (1 - Math.min(value, max) / max);
    path += `${pen}${x.toFixed(1)},${y.toFixed(1)}`;
    pen = "L";
  }
  return path;
}

/** The index of the sample nearest `time` in points sorted by time. */
export function nearest(points, time) {
  let low = 0;
  let high = points.length - 1;
  while (high - low > 1) {
    const middle = (low + high) >> 1;
    if (points[middle][0] < time) low = middle; else high = middle;
  }
  return Math.abs(points[high]?.[0] - time) < Math.abs(points[low]?.[0] - time) ? high : low;
}

/**
 * A chart: series [{name, points: [[time, value]]}], from/to in seconds, an optional fixed
 * max (percentages), a limit line with its label, format(value) for values and ticks.
 */
export function lineChart({series, from, to, max = null, limit = null, limitLabel = null,
  format = (v) => String(v), label = "Chart"}) {
  const box = h("div", {class: "chart-box", tabindex: "0", role: "group",
    "aria-label": `${label}: use the left and right arrow keys to read the values`});
  const tip = h("div", {class: "chart-tip", "aria-hidden": "true", hidden: true});
  const spoken = h("p", {class: "visually-hidden", "aria-live": "polite"});
  const known = series.map((s) => s.points.filter(([, v]) => v !== null && v !== undefined));
  const highest = Math.max(0, ...known.flat().map(([, v]) => v), limit ?? 0);
  const ticks = max === null ? valueTicks(highest) : valueTicks(max);
  const top = ticks[ticks.length - 1];
  const decimals = decimalsFor(ticks);
  const tickText = (v) => (max === null ? format(v, decimals) : format(v));
  let drawn = null; // {width, plot, marker} of the last drawing
  let pointed = null; // the index the read-out shows

  function draw() {
    const width = Math.max(240, Math.round(box.clientWidth || 600));
    if (drawn && drawn.width === width) return;
    // As wide a margin as the longest value label needs ("600 KB/s" more than "100 %").
    const left = Math.max(40, Math.max(...ticks.map((v) => tickText(v).length)) * CHARACTER + 14);
    const plot = {left, top: PAD.top, width: width - left - PAD.right, height: HEIGHT - PAD.top - PAD.bottom};
    const chart = svg("svg", {class: "chart", width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`,
      role: "img", "aria-label": summary()});
    for (const value of ticks) {
      const y = plot.top + plot.height * (1 - value / top);
      chart.append(svg("line", {class: "grid-line", x1: plot.left, x2: plot.left + plot.width, y1: y, y2: y}));
      chart.append(svg("text", {class: "axis-text value-tick", x: plot.left - 8, y: y + 4, "text-anchor": "end"},
        tickText(value)));
    }
    const span = to - from;
    for (const tick of timeTicks(from, to, Math.max(2, Math.floor(plot.width / LABEL_WIDTH)))) {
      const x = plot.left + plot.width * (tick.time - from) / span;
      chart.append(svg("line", {class: "tick", x1: x, x2: x, y1: plot.top + plot.height, y2: plot.top + plot.height + 4}));
      const anchor = x - plot.left < 30 ? "start" : plot.left + plot.width - x < 30 ? "end" : "middle";
      chart.append(svg("text", {class: "axis-text", x, y: HEIGHT - 8, "text-anchor": anchor}, tickLabel(tick, span)));
    }
    if (limit !== null && limit <= top) {
      const y = plot.top + plot.height * (1 - limit / top);
      chart.append(svg("line", {class: "limit", x1: plot.left, x2: plot.left + plot.width, y1: y, y2: y}));
      chart.append(svg("text", {class: "limit-text", x: plot.left + plot.width - 4, y: y - 5, "text-anchor": "end"},
        limitLabel || `limit ${format(limit)}`));
    }
    series.forEach((s, index) => {
      chart.append(svg("path", {class: `series-${index}`, d: linePath(s.points, from, to, top, plot)}));
      if (known[index].length === 1) { // one sample is no line yet: show it as a dot
        const [x, y] = linePath(known[index], from, to, top, plot).slice(1).split(",").map(Number);
        chart.append(svg("circle", {class: `dot-${index}`, cx: x, cy: y, r: 3.5}));
      }
    });
    const marker = svg("g", {class: "marker", visibility: "hidden"});
    marker.append(svg("line", {class: "marker-line", x1: 0, x2: 0, y1: plot.top, y2: plot.top + plot.height}));
    series.forEach((_, index) => marker.append(svg("circle", {class: `dot-${index}`, r: 4, cx: 0, cy: 0})));
    chart.append(marker);
    fill(box, chart, tip, spoken);
    drawn = {width, plot, marker};
    if (pointed !== null) show(pointed, false);
  }

  function summary() {
    const last = known[0][known[0].length - 1];
    const values = known[0].map(([, v]) => v);
    if (!values.length) return `${label}: no samples in this range`;
    return `${label}: now ${format(last[1])}, lowest ${format(Math.min(...values))}, highest ${format(Math.max(...values))}`;
  }

  const reference = series.reduce((a, b) => (b.points.length > a.points.length ? b : a), series[0]).points;

  function show(index, speak) {
    if (!drawn || !reference.length) return;
    pointed = Math.max(0, Math.min(reference.length - 1, index));
    const time = reference[pointed][0];
    const {plot, marker} = drawn;
    const x = plot.left + plot.width * (time - from) / Math.max(1, to - from);
    marker.setAttribute("visibility", "visible");
    marker.querySelector("line").setAttribute("x1", x);
    marker.querySelector("line").setAttribute("x2", x);
    const rows = [];
    series.forEach((s, i) => {
      const point = s.points[nearest(s.points, time)];
      const value = point && Math.abs(point[0] - time) < Math.max(60, (to - from) / 400) ? point[1] : null;
      const dot = marker.querySelectorAll("circle")[i];
      if (value === null || value === undefined) {
        dot.setAttribute("visibility", "hidden");
      } else {
        dot.setAttribute("visibility", "visible");
        dot.setAttribute("cx", x);
        dot.setAttribute("cy", plot.top + plot.height * (1 - Math.min(value, top) / top));
      }
      rows.push([s.name, value === null || value === undefined ? "no sample" : format(value), i]);
    });
    const when = readoutTime(time, to - from);
    fill(tip, h("strong", {}, when), rows.map(([name, value, i]) =>
      h("span", {class: `tip-row tip-${i}`}, `${series.length > 1 ? `${name}: ` : ""}${value}`)));
    tip.hidden = false;
    const left = Math.min(Math.max(x + 10, 0), plot.left + plot.width - tip.offsetWidth);
    tip.classList.toggle("left", x + 10 + tip.offsetWidth > plot.left + plot.width);
    tip.style.left = `${tip.classList.contains("left") ? Math.max(0, x - 10 - tip.offsetWidth) : left}px`;
    if (speak) spoken.textContent = `${when}: ${rows.map(([name, value]) => `${name} ${value}`).join(", ")}`;
  }

  function hide() {
    pointed = null;
    tip.hidden = true;
    drawn?.marker.setAttribute("visibility", "hidden");
  }

  function pointAt(event) {
    if (!drawn || !reference.length) return;
    const rect = box.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const {plot} = drawn;
    if (x < plot.left - 10 || x > plot.left + plot.width + 10) return;
    const time = from + (to - from) * (x - plot.left) / plot.width;
    show(nearest(reference, time), false);
  }

  box.addEventListener("pointermove", pointAt);
  box.addEventListener("pointerdown", pointAt);
  box.addEventListener("pointerleave", (event) => { if (event.pointerType === "mouse") hide(); });
  box.addEventListener("keydown", (event) => {
    const jump = Math.max(1, Math.round(reference.length / 60));
    const at = pointed ?? reference.length - 1;
    const moves = {ArrowLeft: at - jump, ArrowRight: at + jump, Home: 0, End: reference.length - 1};
    if (event.key in moves) {
      event.preventDefault();
      show(moves[event.key], true);
    } else if (event.key === "Escape") {
      hide();
    }
  });
  box.addEventListener("blur", hide);
  // Drawn for the width it is given: again when that changes (a phone turned, a window sized).
  const observer = new ResizeObserver(() => requestAnimationFrame(() => {
    if (box.isConnected) draw();
  }));
  observer.observe(box);
  requestAnimationFrame(draw);
  box.draw = draw;
  box.pointAt = show;
  return box;
}
