// Logs: read the appliance's logs here, not only download them. The jobs' logs (GET /jobs and
// /jobs/<name>/log, the last run of each kind, followed while it runs), and the appliance's
// log files: logs.tar.gz (GET /logs, the token redacted by the appliance) unpacked in the
// browser, each file shown with its times readable and a filter.

import {h, card, field, fill, messageSlot} from "./dom.js";
import {jobPanel, jobKinds} from "./jobs.js";
import {bytes, readableLogLine} from "./format.js";
import {sentence} from "./words.js";

const SHOWN_LINES = 5000;
const decoder = new TextDecoder("utf-8");

function text(bytesOf, start, length) {
  const end = bytesOf.subarray(start, start + length).indexOf(0);
  return decoder.decode(bytesOf.subarray(start, start + (end < 0 ? length : end)));
}

function octal(bytesOf, start, length) {
  return parseInt(text(bytesOf, start, length).trim() || "0", 8);
}

/** The regular files of a tar archive (ustar, GNU long names, pax paths): [{name, data}]. */
export function untar(archive) {
  const files = [];
  let position = 0;
  let longName = null;
  while (position + 512 <= archive.length) {
    const header = archive.subarray(position, position + 512);
    if (header.every((b) => b === 0)) break;
    const size = octal(header, 124, 12);
    const type = String.fromCharCode(header[156] || 48);
    const prefix = text(header, 345, 155);
    const name = longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
    longName = null;
    const data = archive.subarray(position + 512, position + 512 + size);
    position += 512 + Math.ceil(size / 512) * 512;
    if (type === "L") {
      longName = text(data, 0, data.length);
    } else if (type === "x") {
      const path = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(decoder.decode(data));
      if (path) longName = path[1];
    } else if (type === "0" || type === "\0" || type === "7") {
      files.push({name, data});
    }
  }
  return files;
}

/** logs.tar.gz, fetched and unpacked: [{name, data}]. */
async function fetchLogFiles(api) {
  const response = await api.call("GET", "/logs");
  const stream = response.body.pipeThrough(new DecompressionStream("gzip"));
  const archive = new Uint8Array(await new Response(stream).arrayBuffer());
  return untar(archive);
}

function jobLogs(api, jobs, onLeave, kinds) {
  const names = Object.keys(kinds).sort();
  if (!names.length) return null;
  const first = names.find((n) => kinds[n].run) || names[0];
  const select = h("select", {name: "job"}, names.map((name) => h("option", {value: name, selected: name === first},
    `${kinds[name].title ? kinds[name].title[0].toUpperCase() + kinds[name].title.slice(1) : name}`
    + `${kinds[name].run ? "" : " (never run)"}`)));
  const chooser = field("Job", select, "The last run of each kind of job the appliance runs, followed while it runs.");
  const area = h("div");
  let panel = null;
  const show = async () => {
    panel?.stop();
    panel = jobPanel(api, select.value, {title: "Last run", running: "Running", success: "It succeeded.",
      failed: "It failed", none: "This job has not run on this appliance."}, {jobs, onLeave});
    fill(area, panel);
    try {
      await panel.load();
      panel.querySelector("details").open = true;
    } catch (error) {
      fill(area, h("p", {class: "message message-error"}, sentence(error)));
    }
  };
  select.addEventListener("change", show);
  onLeave(() => panel?.stop());
  show();
  return card("Job logs", chooser, area);
}

function fileLogs(api) {
  const slot = messageSlot();
  const read = h("button", {type: "button", class: "button primary", id: "read-logs"}, "Read the log files");
  const select = h("select", {name: "file", disabled: true});
  const chooser = field("Log file", select);
  chooser.hidden = true;
  const filter = h("input", {type: "search", name: "filter", autocomplete: "off"});
  const filterField = field("Show only lines with", filter);
  filterField.hidden = true;
  const note = h("p", {class: "hint"});
  const box = h("pre", {class: "log log-file", tabindex: "0", "aria-label": "Log file", hidden: true});
  let files = [];
  const showFile = () => {
    const file = files[Number(select.value)];
    if (!file) return;
    const all = decoder.decode(file.data).split("\n");
    if (all[all.length - 1] === "") all.pop();
    const wanted = filter.value.trim().toLowerCase();
    const matching = wanted ? all.filter((line) => line.toLowerCase().includes(wanted)) : all;
    const shown = matching.slice(-SHOWN_LINES);
    fill(box, shown.map((line) => readableLogLine(line)).join("\n") || "(no lines)");
    box.hidden = false;
    note.textContent = `${file.name}: ${bytes(file.data.length)}, ${all.length} lines`
      + `${wanted ? `, ${matching.length} with “${filter.value.trim()}”` : ""}`
      + `${shown.length < matching.length ? `; the last ${shown.length} are shown` : ""}.`;
    box.scrollTop = box.scrollHeight;
  };
  read.addEventListener("click", async () => {
    slot.clear();
    read.disabled = true;
    read.textContent = "Collecting the logs…";
    try {
      files = (await fetchLogFiles(api)).sort((a, b) => a.name.localeCompare(b.name));
      if (!files.length) {
        slot.show("info", "The appliance's log bundle holds no files.");
        return;
      }
      fill(select, files.map((file, index) => h("option", {value: String(index)}, `${file.name} (${bytes(file.data.length)})`)));
      select.disabled = false;
      chooser.hidden = false;
      filterField.hidden = false;
      showFile();
      slot.show("success", `${files.length} log files read.`);
    } catch (error) {
      slot.show("error", error.status !== undefined ? sentence(error)
        : `The log bundle could not be read: ${error.message}`);
    } finally {
      read.disabled = false;
      read.textContent = files.length ? "Read them again" : "Read the log files";
    }
  });
  select.addEventListener("change", showFile);
  filter.addEventListener("input", showFile);
  return card("Log files", h("p", {}, "The appliance's log files, collected as for the Support download (its API token "
    + "is blanked out in them), read here."), slot, h("div", {class: "actions"}, read),
  h("div", {class: "columns"}, chooser, filterField), note, box);
}

export async function render({api, served, jobs, onLeave}) {
  const kinds = served.has("/jobs") ? await jobKinds(api) : {};
  return h("div", {class: "stack"}, jobLogs(api, jobs, onLeave, kinds), served.has("/logs") ? fileLogs(api) : null);
}
