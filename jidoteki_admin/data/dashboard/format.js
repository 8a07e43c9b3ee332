// Times, sizes and log lines as people read them. The appliance speaks UTC ISO dates, Unix
// seconds and du's "24105M"; the page shows the browser's local time and KB, MB, GB.

/** A Date from ISO text or Unix seconds; null for anything else. */
export function dateOf(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

/** A moment in local time: "14:03:20" today, "12 Mar, 14:03" another day, with the year
 * when it is not this one. */
export function when(value, {seconds = true, now = new Date()} = {}) {
  const date = dateOf(value);
  if (!date) return "";
  const time = date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", ...(seconds ? {second: "2-digit"} : {})});
  if (sameDay(date, now)) return time;
  const day = date.toLocaleDateString([], {day: "numeric", month: "short",
    ...(date.getFullYear() !== now.getFullYear() ? {year: "numeric"} : {})});
  return `${day}, ${time}`;
}

/** A date and time in full, local: "Tue, 12 Mar 2027, 14:03". */
export function fullDate(value) {
  const date = dateOf(value);
  if (!date) return "";
  return date.toLocaleString([], {weekday: "short", day: "numeric", month: "short", year: "numeric",
    hour: "2-digit", minute: "2-digit"});
}

/** A day: "12 March 2027". */
export function day(value) {
  const date = dateOf(value);
  return date ? date.toLocaleDateString([], {day: "numeric", month: "long", year: "numeric"}) : "";
}

/** A length of time: "8 s", "3 min 20 s", "2 h 5 min", "3 days". */
export function duration(totalSeconds) {
  if (typeof totalSeconds !== "number" || !Number.isFinite(totalSeconds)) return "";
  const s = Math.max(0, Math.round(totalSeconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
  if (s < 86400) return `${Math.floor(s / 3600)} h${Math.floor(s / 60) % 60 ? ` ${Math.floor(s / 60) % 60} min` : ""}`;
  const days = Math.floor(s / 86400);
  return `${days} day${days === 1 ? "" : "s"}`;
}

/** How long ago: "just now", "5 min ago", "3 days ago". */
export function ago(value, now = Date.now()) {
  const date = dateOf(value);
  if (!date) return "";
  const seconds = (now - date.getTime()) / 1000;
  if (seconds < 0) return `in ${duration(-seconds)}`;
  if (seconds < 10) return "just now";
  return `${duration(seconds)} ago`;
}

/** Bytes as people read them: 1.5 MB (powers of 1000, as disks are sold). */
export function bytes(count) {
  if (typeof count !== "number" || !Number.isFinite(count)) return "";
  const units = ["bytes", "KB", "MB", "GB", "TB", "PB"];
  let value = count;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  if (unit === 0) return `${count} ${count === 1 ? "byte" : "bytes"}`;
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const SUFFIX = {"": 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4, P: 1024 ** 5};

/** The bytes of a size as du -h, df -h and free print it ("24105M", "3.4G", "128.0K", "0"). */
export function parseSize(text) {
  if (typeof text === "number") return text;
  const match = /^\s*([0-9]+(?:[.,][0-9]+)?)\s*([BKMGTP]?)i?B?\s*$/i.exec(String(text ?? ""));
  if (!match) return null;
  return Number(match[1].replace(",", ".")) * SUFFIX[match[2].toUpperCase()];
}

/** A size the appliance wrote as du does, as people read it; the text as it came if it is
 * not one. */
export function size(text) {
  const count = parseSize(text);
  return count === null ? String(text ?? "") : bytes(count);
}

const LOG_LINE = /^\[(\d{9,11})\]\[([^\]]*)\]\s?(.*)$/;

/** A log line "[1700000000][SYSTEM] message" as {time: Date, label, text}; a line of
 * another form as {time: null, label: "", text}. */
export function logLine(line) {
  const match = LOG_LINE.exec(line);
  if (!match) return {time: null, label: "", text: line};
  return {time: new Date(Number(match[1]) * 1000), label: match[2], text: match[3]};
}

/** A log line with its time readable: "14:03:20 SYSTEM message". */
export function readableLogLine(line, now = new Date()) {
  const {time, label, text} = logLine(line);
  if (!time) return text;
  return `${when(time, {now})}  ${label ? `${label}  ` : ""}${text}`;
}
