// Update: check a package first (what it is, what it would replace, whether the appliance
// would take it: its own precheck included), then install it; watch the update job as the
// appliance runs it: its progress, its log (this run's only) and how it ended; and every
// attempt before, as a table.
//
// A check stages the package on the appliance (POST /update/stage) when it would install,
// so installing it (POST /update/apply) sends nothing again; Discard deletes it.

import {h, card, facts, fill, field, messageSlot, progress} from "./dom.js";
import {bytes, duration, when} from "./format.js";
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
    "An encrypted software package from the vendor (software_package-….enc). It is checked first; nothing "
    + "is installed until you say so.");
  const submit = h("button", {type: "submit", class: "button primary"}, "Check the package");
  const uploadBar = progress("Upload");
  uploadBar.hidden = true;
  const staged = h("div", {id: "update-staged"});
  const history = h("div", {id: "update-history"});
  let busy = false;
  let ended = null;  // the run whose end was last shown, so it is shown once
  const panel = jobPanel(api, "update", {title: "Last update", running: "Installing", success: "The update is installed.",
    failed: "The update failed", none: "No update has run on this appliance yet."}, {
    jobs, onLeave,
    onState: (state) => {
      busy = state.status === "running";
      submit.disabled = busy;
      for (const button of staged.querySelectorAll("button")) button.disabled = busy;
    },
    onEnd: (state) => {
      if (state.run === ended) return;
      ended = state.run;
      uploadBar.hidden = true;
      slot.clear();
      if (state.status === "success") refreshVersion();
      showHistory();
      showStaged();
    },
  });

  async function showHistory() {
    const answer = await api.optional("/update/history").catch(() => null);
    const attempts = answer?.history || [];
    if (!attempts.length) {
      fill(history, h("p", {class: "muted"}, "No update has been attempted on this appliance yet."));
      return;
    }
    const row = (a) => h("tr", {},
      h("td", {}, when(a.ended || a.started)),
      h("td", {}, a.from || "–"),
      h("td", {}, a.to || "–"),
      h("td", {class: a.outcome === "success" ? "ok" : "bad"}, a.outcome === "success" ? "Installed" : "Failed"),
      h("td", {}, a.outcome === "success" ? "" : [a["error-code"] || "", a["error-code"] ? " " : "",
        a["error-message"] || ""]),
      h("td", {}, a["rolled-back"] === true ? "Yes" : a["rolled-back"] === false ? "No" : ""),
      h("td", {}, duration(a.seconds)));
    fill(history, h("div", {class: "table-scroll", tabindex: 0, role: "region", "aria-label": "Update history"},
      h("table", {class: "table"},
      h("caption", {class: "visually-hidden"}, "Every update attempt, newest first"),
      h("thead", {}, h("tr", {}, ["When", "From", "To", "Outcome", "Why", "Rolled back", "Took"]
        .map((title) => h("th", {scope: "col"}, title)))),
      h("tbody", {}, attempts.map(row)))));
  }

  function report(checked) {
    return [
      facts([["Package", checked.package || checked["uploaded-as"]], ["Its version", checked.version || "not given"],
        ["Installed now", checked.installed || "not known"], ["Size", checked.size ? bytes(checked.size) : null]]),
      checked.changelog ? h("details", {}, h("summary", {}, "What the package changes (its changelog)"),
        h("pre", {class: "log"}, checked.changelog)) : null,
      checked.precheck && checked.precheck.length ? h("details", {}, h("summary", {}, "What its precheck said"),
        h("pre", {class: "log"}, checked.precheck.join("\n"))) : null,
    ];
  }

  async function showStaged(checked = null) {
    const note = checked ? null : (await api.optional("/update/staged").catch(() => null))?.staged;
    const shown = checked || note;
    if (!shown) {
      fill(staged);
      return;
    }
    const install = h("button", {type: "button", class: "button primary", id: "update-install", disabled: busy},
      shown.version ? `Install ${shown.version}` : "Install it");
    const discard = h("button", {type: "button", class: "button", id: "update-discard", disabled: busy}, "Discard");
    install.addEventListener("click", async () => {
      install.disabled = discard.disabled = true;
      const previous = panel.run();
      try {
        await api.post("/update/apply", {});
        slot.show("info", "The appliance is installing the package.");
        fill(staged);
        await panel.started(previous);
      } catch (error) {
        slot.show("error", sentence(error));
        install.disabled = discard.disabled = false;
      }
    });
    discard.addEventListener("click", async () => {
      try {
        await api.post("/update/discard", {});
        fill(staged);
        slot.show("info", "The checked package is deleted from the appliance.");
        submit.focus();
      } catch (error) {
        slot.show("error", sentence(error));
      }
    });
    fill(staged, h("div", {class: "message message-success"},
      h("p", {}, shown.version && shown.installed
        ? `The appliance would install ${shown.version} over ${shown.installed}.`
        : "The appliance would install this package."), report(shown),
      h("div", {class: "actions"}, install, discard)));
  }

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
    uploadBar.hidden = false;
    uploadBar.set(0, `Reading ${bytes(chosen.size)}`);
    try {
      const current = (await api.optional("/update/staged").catch(() => null))?.staged;
      if (current) await api.post("/update/discard", {});  // a new check replaces what was checked before
      const checked = await api.upload("/update/stage", {update: chosen}, (sent, total) =>
        uploadBar.set(100 * sent / total, sent ? `Uploading: ${bytes(sent)} of ${bytes(total)}` : `Reading ${bytes(total)}`));
      uploadBar.hidden = true;
      await showStaged(checked);
      document.querySelector("#update-install")?.focus();
    } catch (error) {
      uploadBar.hidden = true;
      if (error.status === 400 && error.message.startsWith("Not staged: ")) {
        fill(staged, h("div", {class: "message message-error"},
          h("p", {}, `The appliance would not install this package: ${error.message.slice("Not staged: ".length)}`)));
      } else {
        showRefusal(error, {update: file}, slot);
      }
    } finally {
      submit.disabled = busy;
    }
  });
  await Promise.all([panel.load(), showHistory(), showStaged()]);
  return h("div", {class: "stack"},
    card("Install an update", slot, form, uploadBar, staged),
    card("The update job", panel),
    card("Update history", history));
}
