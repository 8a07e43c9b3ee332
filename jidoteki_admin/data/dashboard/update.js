// Update: upload a package, watch its bytes go, then the update job as the appliance runs
// it: its progress, its log (this run's only) and how it ended.

import {h, card, field, messageSlot, progress} from "./dom.js";
import {bytes} from "./format.js";
import {jobPanel} from "./jobs.js";
import {explain, sentence} from "./words.js";

/** Show an API refusal at the field it concerns (or in the slot). */
export function showRefusal(error, fields, slot) {
  const explained = explain(error.message);
  const target = explained.field && fields[explained.field];
  if (error.status !== 0 && target) {
    target.setError(explained.text);
    target.input.focus();
  } else {
    slot.show("error", sentence(error));
  }
}

export async function render({api, jobs, onLeave, refreshVersion}) {
  const slot = messageSlot();
  const file = field("Update package", h("input", {type: "file", name: "update", accept: ".enc"}),
    "An encrypted software package from the vendor (software_package-….enc).");
  const submit = h("button", {type: "submit", class: "button primary"}, "Upload and install");
  const uploadBar = progress("Upload");
  uploadBar.hidden = true;
  const panel = jobPanel(api, "update", {title: "Last update", running: "Installing", success: "The update is installed.",
    failed: "The update failed", none: "No update has run on this appliance yet."}, {
    jobs, onLeave,
    onState: (state) => { submit.disabled = state.status === "running"; },
    onEnd: (state) => {
      uploadBar.hidden = true;
      slot.clear();
      if (state.status === "success") refreshVersion();
    },
  });
  const form = h("form", {class: "form", id: "update-form", novalidate: true}, file, h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    file.setError(null);
    const chosen = file.input.files[0];
    if (!chosen) {
      file.setError("Choose the update package file.");
      file.input.focus();
      return;
    }
    submit.disabled = true;
    const previous = panel.run();
    uploadBar.hidden = false;
    uploadBar.set(0, `Uploading: 0 of ${bytes(chosen.size)}`);
    try {
      await api.upload("/update", {update: chosen}, (sent, total) =>
        uploadBar.set(100 * sent / total, `Uploading: ${bytes(sent)} of ${bytes(total)}`));
      uploadBar.set(100, `Uploaded ${bytes(chosen.size)}`);
      slot.show("info", "The package is uploaded; the appliance is installing it.");
      await panel.started(previous);
    } catch (error) {
      uploadBar.hidden = true;
      showRefusal(error, {update: file}, slot);
      submit.disabled = false;
    }
  });
  await panel.load();
  return h("div", {class: "stack"},
    card("Install an update", slot, form, uploadBar),
    card("The update job", panel));
}
