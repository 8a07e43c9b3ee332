// Update: upload a package, watch its bytes go, then the job's percentage and log.

import {h, card, field, messageSlot, progress, bytes} from "./dom.js";
import {follow, statusLine, statusLog, logBox, showLogButton} from "./jobs.js";

export async function render({api, onLeave, refreshVersion}) {
  let stopped = false;
  onLeave(() => { stopped = true; });
  const slot = messageSlot();
  const file = field("Update package", h("input", {type: "file", name: "update", accept: ".enc"}),
    "An encrypted software package from the vendor (software_package-….enc).");
  const submit = h("button", {type: "submit", class: "button primary"}, "Upload and install");
  const uploadBar = progress("Upload");
  const jobBar = progress("Update");
  uploadBar.hidden = true;
  jobBar.hidden = true;
  const status = h("div", {class: "job-status"});
  const log = logBox("Update log");
  const fullLog = showLogButton(api, "/update/log", "Show the whole update log", log, slot);
  let following = false; // messages are for an update followed here, not for the last one found
  const show = (answer) => {
    status.replaceChildren(statusLine(answer));
    if (typeof answer?.percentage === "number") {
      jobBar.hidden = false;
      jobBar.set(answer.percentage, answer.status === "failed" ? `Stopped at ${answer.percentage} %`
        : `Installing: ${answer.percentage} %`);
    }
    log.set(statusLog(answer));
    fullLog.hidden = !answer?.status;
    if (!following) return;
    if (answer?.status === "failed") {
      slot.show("error", "The update failed: ", [answer["error-code"], answer["error-message"]].filter(Boolean).join(": ")
        || "see the log.");
    } else if (answer?.status === "success") {
      slot.show("success", "The update is installed.");
      refreshVersion();
    }
  };
  const watch = async () => {
    following = true;
    submit.disabled = true;
    await follow(api, "/update", {onStatus: show, onError: (error) => slot.show("error", error.message),
      isStopped: () => stopped});
    submit.disabled = false;
  };
  const form = h("form", {class: "form", id: "update-form"}, file, h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    file.setError(null);
    const chosen = file.input.files[0];
    if (!chosen) {
      file.setError("Choose an update package.");
      return;
    }
    submit.disabled = true;
    uploadBar.hidden = false;
    jobBar.hidden = true;
    uploadBar.set(0, `Uploading: 0 of ${bytes(chosen.size)}`);
    try {
      await api.upload("/update", {update: chosen}, (sent, total) =>
        uploadBar.set(100 * sent / total, `Uploading: ${bytes(sent)} of ${bytes(total)}`));
      uploadBar.set(100, `Uploaded ${bytes(chosen.size)}`);
      slot.show("info", "The package is uploaded; the appliance is installing it.");
      await watch();
    } catch (error) {
      slot.show("error", error.message);
      submit.disabled = false;
    }
  });
  const current = await api.json("/update");
  show(current);
  if (current?.status === "running") watch();
  return h("div", {class: "stack"},
    card("Install an update", slot, form, uploadBar),
    card("The last update", status, jobBar, log, h("p", {}, fullLog)));
}
