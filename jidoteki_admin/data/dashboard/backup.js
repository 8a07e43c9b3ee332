// Backup and restore: the backup on the appliance (when it was made, its size and checksum),
// starting one and following it as it grows, stopping or deleting it, downloading it; and
// restoring one, with the restore job followed while the appliance works.

import {h, card, facts, field, fill, messageSlot, progress, confirmDialog} from "./dom.js";
import {bytes, fullDate, ago, size} from "./format.js";
import {jobPanel} from "./jobs.js";
import {showRefusal} from "./update.js";
import {sentence} from "./words.js";

const RUNNING_MS = 1000;

/** What GET /backup says, in words: the backup there is, or why there is none. */
export function backupFacts(answer) {
  if (!answer) return h("p", {class: "muted"}, "There is no backup on the appliance.");
  if (answer.status === "running") {
    return h("p", {}, typeof answer.written === "number"
      ? `A backup is being written: ${bytes(answer.written)} so far.` : "A backup is starting…");
  }
  if (answer.status === "failed") return h("p", {class: "muted"}, "There is no backup on the appliance: the last one failed.");
  return facts([
    ["Made", answer.created ? `${fullDate(answer.created)} (${ago(answer.created)})` : "at a time the appliance did not record"],
    ["Size", size(answer.filesize)],
    ["SHA-256", answer.sha256 ? h("code", {class: "fingerprint"}, answer.sha256) : null],
  ]);
}

export async function render({api, jobs, onLeave}) {
  let stopped = false;
  let watching = false;
  onLeave(() => { stopped = true; });
  const slot = messageSlot();
  const details = h("div", {id: "backup-details"});
  const start = h("button", {type: "button", class: "button primary", id: "backup-start"}, "Start a backup");
  const stop = h("button", {type: "button", class: "button", id: "backup-stop"}, "Delete the backup");
  const download = h("button", {type: "button", class: "button", id: "backup-download"}, "Download backup.tar");
  let backup = null;
  const show = (answer) => {
    backup = answer;
    fill(details, backupFacts(answer));
    const state = answer?.status;
    download.hidden = state !== "success";
    start.disabled = state === "running";
    stop.hidden = state !== "running" && state !== "success";
    stop.textContent = state === "running" ? "Stop the backup" : "Delete the backup";
  };
  const refresh = async () => {
    show(await api.optional("/backup"));
    return backup;
  };
  // The size written so far, while the backup runs (the job panel has its progress and log).
  const watch = async () => {
    if (watching) return;
    watching = true;
    try {
      while (!stopped) {
        try {
          if ((await refresh())?.status !== "running") break;
        } catch {
          // no answer: the connection notice says so
        }
        await new Promise((done) => setTimeout(done, RUNNING_MS));
      }
    } finally {
      watching = false;
    }
  };
  const panel = jobPanel(api, "backup", {title: "Last backup", running: "Writing the archive",
    success: "The backup is ready to download.", failed: "The backup failed", none: "No backup has been made yet."}, {
    jobs, onLeave,
    onState: (state) => {
      if (state.status === "running") watch();
    },
    onEnd: () => {
      slot.clear();
      refresh().catch(() => null);
    },
  });
  start.addEventListener("click", async () => {
    slot.clear();
    start.disabled = true;
    try {
      const previous = panel.run();
      await api.post("/backup", {action: "START"});
      watch();
      await panel.started(previous);
    } catch (error) {
      slot.show("error", sentence(error));
      start.disabled = false;
    }
  });
  stop.addEventListener("click", async () => {
    const running = backup?.status === "running";
    if (!await confirmDialog(running ? "Stop the backup?" : "Delete the backup?",
      running ? "The backup is stopped, and what it wrote is deleted."
        : "The backup archive is deleted from the appliance. A copy you downloaded is not affected.",
      running ? "Stop and delete" : "Delete", true)) return;
    slot.clear();
    try {
      await api.post("/backup", {action: "STOP"});
      slot.show("success", running ? "The backup is stopped and deleted." : "The backup is deleted.");
      await panel.refresh().catch(() => null);
      for (let i = 0; i < 20 && (await refresh())?.status === "running"; i += 1) {
        await new Promise((done) => setTimeout(done, 250));
      }
    } catch (error) {
      slot.show("error", sentence(error));
    }
  });
  download.addEventListener("click", async () => {
    slot.clear();
    try {
      await api.download("/backup/download", "backup.tar", {stream: true});
    } catch (error) {
      slot.show("error", sentence(error));
    }
  });

  const restoreSlot = messageSlot();
  const archive = field("Backup archive", h("input", {type: "file", name: "archive", accept: ".tar"}),
    "A backup.tar this or another appliance made. Restoring replaces the data it holds.");
  const restoreBar = progress("Restore upload");
  restoreBar.hidden = true;
  const restore = h("button", {type: "submit", class: "button danger"}, "Restore");
  const restorePanel = jobPanel(api, "restore", {title: "Last restore", running: "Restoring",
    success: "The backup is restored.", failed: "The restore failed", none: "No backup has been restored yet."},
  {jobs, onLeave});
  const restoreForm = h("form", {class: "form", id: "restore-form", novalidate: true}, archive,
    h("div", {class: "actions"}, restore), restoreBar);
  restoreForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    restoreSlot.clear();
    archive.setError(null);
    const chosen = archive.input.files[0];
    if (!chosen) {
      archive.setError("Choose a backup archive (backup.tar).");
      archive.input.focus();
      return;
    }
    if (!await confirmDialog("Restore this backup?", `The appliance's data is replaced by what ${chosen.name} holds.`,
      "Restore", true)) {
      return;
    }
    restore.disabled = true;
    restoreBar.hidden = false;
    restoreBar.set(0, `Uploading: 0 of ${bytes(chosen.size)}`);
    let uploaded = false;
    const previous = restorePanel.run();
    try {
      // POST /backup/restore answers once the restore is done: meanwhile its job is followed.
      await api.upload("/backup/restore", {archive: chosen}, (sent, total) => {
        restoreBar.set(100 * sent / total, `Uploading: ${bytes(sent)} of ${bytes(total)}`);
        if (sent >= total && !uploaded) {
          uploaded = true;
          restoreBar.hidden = true;
          restoreSlot.show("info", "Uploaded; the appliance is restoring it…");
          restorePanel.started(previous);
        }
      });
      restoreBar.hidden = true;
      restoreSlot.clear();
      await restorePanel.started(previous);
    } catch (error) {
      restoreBar.hidden = true;
      restoreSlot.clear();
      showRefusal(error, {archive}, restoreSlot);
      restorePanel.refresh().catch(() => null);
    } finally {
      restore.disabled = false;
    }
  });

  await refresh();
  await panel.load();
  if (backup?.status === "running") watch();
  await restorePanel.load();
  return h("div", {class: "grid"},
    card("Backup", slot, details, h("div", {class: "actions spaced"}, start, download, stop), panel),
    card("Restore", restoreSlot, restoreForm, restorePanel));
}
