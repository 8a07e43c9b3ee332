// Line charts in plain SVG, for the Monitor page.

const SVG = "http://www.w3.org/2000/svg";
const WIDE = 640;
const NARROW = 360; // on a phone: the same text size on a smaller drawing
const HEIGHT = 200;
const PAD = {left: 62, right: 12, top: 10, bottom: 24};

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

/** The path of points [[time, value], ...] scaled into the plot; gaps (null) break the line. */
export function linePath(points, from, to, max, full = WIDE) {
  const width = full - PAD.left - PAD.right;
  const height = HEIGHT - PAD.top - PAD.bottom;
  const span = Math.max(1, to - from);
  let path = "";
  let pen = "M";
  for (const [time, value] of points) {
    if (value === null || value === undefined || Number.isNaN(value)) {
      pen = "M";
      continue;
    }
    const x = PAD.left + width * (time - from) / span;
    const y = PAD.top + height * (1 - Math.min(value, max) / max);
    path += `${pen}${x.toFixed(1)},${y.toFixed(1)}`;
    pen = "L";
  }
  return path;
}

function timeLabel(seconds, span) {
  const date = new Date(seconds * 1000);
  if (span <= 2 * 86400) return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  return date.toLocaleDateString([], {month: "short", day: "numeric"});
}

/**
 * An SVG chart: series [{name, points: [[time, value]]}], from/to in seconds, an optional
 * fixed max (percentages) and limit line, and format(value) for the axis.
 */
export function lineChart({series, from, to, max = null, limit = null, format = (v) => String(v), label = "Chart",
  narrow = window.matchMedia("(max-width: 760px)").matches}) {
  const WIDTH = narrow ? NARROW : WIDE;
  const highest = Math.max(0, ...series.flatMap((s) => s.points.map(([, v]) => v ?? 0)), limit ?? 0);
  const top = max ?? niceMax(highest);
  const chart = svg("svg", {class: "chart", viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label});
  const width = WIDTH - PAD.left - PAD.right;
  const height = HEIGHT - PAD.top - PAD.bottom;
  for (let i = 0; i <= 4; i += 1) {
    const y = PAD.top + height * i / 4;
    chart.append(svg("line", {class: "grid-line", x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y}));
    chart.append(svg("text", {class: "axis-text", x: PAD.left - 6, y: y + 4, "text-anchor": "end"},
      format(top * (1 - i / 4))));
  }
  // Five times across a laptop's width; on a phone's, every other one, or they run together.
  for (let i = 0; i <= 4; i += narrow ? 2 : 1) {
    const x = PAD.left + width * i / 4;
    chart.append(svg("text", {class: "axis-text", x, y: HEIGHT - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle"},
      timeLabel(from + (to - from) * i / 4, to - from)));
  }
  if (limit !== null && limit <= top) {
    const y = PAD.top + height * (1 - limit / top);
    chart.append(svg("line", {class: "limit", x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y}));
  }
  series.forEach((s, index) => {
    chart.append(svg("path", {class: `series-${index}`, d: linePath(s.points, from, to, top, WIDTH)}));
  });
  const known = series[0]?.points.filter(([, v]) => v !== null && v !== undefined) || [];
  if (known.length === 1) { // one sample is no line yet: show it as a dot
    const [x, y] = linePath(known, from, to, top, WIDTH).slice(1).split(",").map(Number);
    chart.append(svg("circle", {class: "series-0", cx: x, cy: y, r: 3}));
  }
  return chart;
}
