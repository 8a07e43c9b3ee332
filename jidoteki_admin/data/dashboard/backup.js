// Backup and restore: start a backup, stop or delete it, download it, restore one.

import {h, card, facts, field, messageSlot, progress, bytes, confirmDialog} from "./dom.js";
import {follow, statusLine, logBox, showLogButton} from "./jobs.js";

export async function render({api, onLeave}) {
  let stopped = false;
  onLeave(() => { stopped = true; });
  const slot = messageSlot();
  const status = h("div", {id: "backup-status"});
  const details = h("div");
  const start = h("button", {type: "button", class: "button primary", id: "backup-start"}, "Start a backup");
  const stop = h("button", {type: "button", class: "button", id: "backup-stop"}, "Stop or delete the backup");
  const download = h("button", {type: "button", class: "button", id: "backup-download"}, "Download backup.tar");
  const log = logBox("Backup log");
  const showLog = showLogButton(api, "/backup/log", "Show the backup log", log, slot);
  const show = (answer) => {
    status.replaceChildren(statusLine(answer));
    details.replaceChildren(facts([["Size", answer?.filesize], ["SHA-256", answer?.sha256]]));
    download.hidden = answer?.status !== "success";
    start.disabled = answer?.status === "running";
  };
  const refresh = async () => {
    const answer = await api.optional("/backup");
    show(answer);
    return answer;
  };
  const watch = async () => {
    const last = await follow(api, "/backup", {onStatus: show, isStopped: () => stopped,
      onError: (error) => { if (error.status !== 404) slot.show("error", error.message); }});
    if (last?.status === "success") slot.show("success", "The backup is ready to download.");
    if (last?.status === "failed") slot.show("error", "The backup failed: see the backup log.");
  };
  start.addEventListener("click", async () => {
    slot.clear();
    start.disabled = true;
    try {
      await api.post("/backup", {action: "START"});
      slot.show("info", "The backup is running.");
      await watch();
    } catch (error) {
      slot.show("error", error.message);
    } finally {
      start.disabled = false;
    }
  });
  stop.addEventListener("click", async () => {
    if (!await confirmDialog("Stop or delete the backup?", "A running backup is stopped, and the backup file is deleted.",
      "Stop and delete", true)) return;
    slot.clear();
    try {
      await api.post("/backup", {action: "STOP"});
      slot.show("success", "The backup is stopped and deleted.");
      await refresh();
    } catch (error) {
      slot.show("error", error.message);
    }
  });
  download.addEventListener("click", async () => {
    slot.clear();
    try {
      await api.download("/backup/download", "backup.tar", {stream: true});
    } catch (error) {
      slot.show("error", error.message);
    }
  });

  const restoreSlot = messageSlot();
  const archive = field("Backup archive", h("input", {type: "file", name: "archive", accept: ".tar"}),
    "A backup.tar this or another appliance made. Restoring replaces the data it holds.");
  const restoreBar = progress("Restore upload");
  restoreBar.hidden = true;
  const restore = h("button", {type: "submit", class: "button danger"}, "Restore");
  const restoreForm = h("form", {class: "form", id: "restore-form"}, archive, h("div", {class: "actions"}, restore), restoreBar);
  restoreForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    restoreSlot.clear();
    archive.setError(null);
    const chosen = archive.input.files[0];
    if (!chosen) {
      archive.setError("Choose a backup archive.");
      return;
    }
    if (!await confirmDialog("Restore this backup?", `The appliance's data is replaced by ${chosen.name}.`, "Restore", true)) {
      return;
    }
    restore.disabled = true;
    restoreBar.hidden = false;
    try {
      await api.upload("/backup/restore", {archive: chosen}, (sent, total) => {
        restoreBar.set(100 * sent / total, sent < total ? `Uploading: ${bytes(sent)} of ${bytes(total)}`
          : "Uploaded; restoring…");
      });
      restoreBar.set(100, "Restored");
      restoreSlot.show("success", "The backup is restored.");
    } catch (error) {
      restoreSlot.show("error", error.message);
    } finally {
      restore.disabled = false;
    }
  });

  const answer = await refresh();
  if (answer?.status === "running") watch();
  return h("div", {class: "grid"},
    card("Backup", slot, status, details, h("div", {class: "actions spaced"}, start, download, stop), h("p", {}, showLog), log),
    card("Restore", restoreSlot, restoreForm));
}
