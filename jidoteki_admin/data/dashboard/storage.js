// Storage: where the appliance keeps its data, among the types it allows; the storage job as
// the appliance runs it.

import {h, card, field, messageSlot} from "./dom.js";
import {jsonFile} from "./api.js";
import {jobPanel} from "./jobs.js";
import {showRefusal} from "./words.js";

export const TYPES = {
  local: {title: "Local disk", fields: []},
  nfs: {title: "NFS (Network File System)", fields: [["ip", "Server address"], ["share", "Share", "Like /nfs/storage"],
    ["mount_options", "Mount options", "Like noacl,sync (optional)"]]},
  aoe: {title: "ATA over Ethernet", fields: [["device", "Device", "Like e0.1"]]},
  iscsi: {title: "iSCSI", fields: [["ip", "Target address"], ["target", "Target", "Like iqn.2016-01.com.example:storage.lun1"],
    ["username", "User name (optional)"], ["password", "Password (optional)", null, "password"]]},
  nbd: {title: "Network Block Device", fields: [["ip", "Server address"], ["port", "Port", "Like 10809"],
    ["export_name", "Export name"]]},
};

/** The types to offer: those the appliance allows (its "options"), in its order. */
export function allowedTypes(answer) {
  const options = Array.isArray(answer?.options) ? answer.options : [];
  return options.filter((type) => type in TYPES);
}

/** The document POST /storage takes: the type and its non-empty fields. */
export function storageDocument(type, values) {
  const storage = {type};
  for (const [name] of TYPES[type].fields) {
    if (values[name] !== undefined && values[name] !== "") storage[name] = values[name];
  }
  return {storage};
}

/**
 * What GET /storage answers, or, before the settings were first saved (404 "storage.json
 * not found"), every known type with no settings: the appliance then refuses a type its
 * options file does not allow, naming those it does. null when it has no options file.
 */
export async function loadStorage(api) {
  try {
    return {answer: await api.json("/storage"), unsaved: false};
  } catch (error) {
    if (error.status !== 404) throw error;
    if (!error.message.startsWith("storage.json")) return null;  // no storage-options file
    return {answer: {storage: {}, options: Object.keys(TYPES)}, unsaved: true};
  }
}

export async function render({api, jobs, onLeave}) {
  const loaded = await loadStorage(api);
  if (!loaded) {
    return card("Storage", h("p", {class: "muted"}, "This appliance allows no storage type to be chosen."));
  }
  const {answer, unsaved} = loaded;
  const types = allowedTypes(answer);
  const stored = answer.storage || {};
  const slot = messageSlot();
  if (unsaved) {
    slot.show("info", "No storage settings are saved yet. The appliance says which types it allows if the one "
      + "chosen is not among them.");
  }
  const select = h("select", {name: "type"}, types.map((t) => h("option", {value: t, selected: t === stored.type},
    TYPES[t].title)));
  const typeField = field("Storage type", select);
  const extra = h("div", {class: "columns wide"});  // room for an iSCSI name
  let wrappers = {};
  const drawFields = () => {
    wrappers = {};
    extra.replaceChildren(...TYPES[select.value].fields.map(([name, label, hint, kind]) => {
      const value = select.value === stored.type ? stored[name] ?? "" : "";
      wrappers[name] = field(label, h("input", {type: kind || "text", name, value, autocomplete: "off"}), hint);
      return wrappers[name];
    }));
  };
  select.addEventListener("change", drawFields);
  if (types.length) drawFields();
  const submit = h("button", {type: "submit", class: "button primary"}, "Save the storage settings");
  const panel = jobPanel(api, "storage", {title: "Last storage change", running: "Saving",
    success: "The storage settings are saved. The appliance uses them after its next restart.",
    failed: "Saving the storage settings failed", none: "The storage settings have not been changed yet."}, {
    jobs, onLeave, onEnd: () => slot.clear()});
  const form = h("form", {class: "form", id: "storage-form", novalidate: true}, typeField, extra,
    h("p", {class: "hint"}, "The new storage is used after the next restart."), h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    const values = Object.fromEntries(Object.entries(wrappers).map(([n, w]) => [n, w.input.value.trim()]));
    for (const wrapper of [typeField, ...Object.values(wrappers)]) wrapper.setError(null);
    submit.disabled = true;
    const previous = panel.run();
    try {
      await api.upload("/storage", {settings: jsonFile(storageDocument(select.value, values))});
      slot.show("info", "Saving the storage settings…");
      await panel.started(previous);
    } catch (error) {
      showRefusal(slot, error, (explained) => (explained.field === "type" ? typeField : wrappers[explained.field]));
    } finally {
      submit.disabled = false;
    }
  });
  await panel.load().catch(() => null);
  if (!types.length) {
    return card("Storage", h("p", {class: "muted"}, "This appliance allows no storage type to be chosen."));
  }
  return h("div", {class: "stack"}, card("Persistent storage", slot, form), card("The storage job", panel));
}
