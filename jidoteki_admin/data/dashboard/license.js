// License: the installed license, and installing a new one: checked first (POST
// /license/check), with a question before an expired license replaces a valid one. On an
// appliance whose bin/license.sh installs licenses, its license job is shown too.

import {h, card, facts, field, fill, messageSlot, message, confirmDialog} from "./dom.js";
import {jobPanel} from "./jobs.js";
import {explain, sentence} from "./words.js";

const LABELS = {app: "Product", name: "Licensed to", contact: "Contact", users: "Users", expires: "Expires"};

/** The license details as label/value pairs, the known ones first. */
export function licenseFacts(details) {
  const known = Object.keys(LABELS).filter((k) => k in details).map((k) => [LABELS[k], String(details[k])]);
  const other = Object.entries(details).filter(([k]) => !(k in LABELS) && k !== "expired")
    .map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  return [...known, ...other];
}

/** The installed license as a card's content: its state in words first, then its details. */
export function licenseSummary(details) {
  if (!details) return h("p", {class: "muted"}, "No valid license is installed.");
  return [details.expired === true ? message("error", `This license expired on ${details.expires}: renew it with the vendor.`)
    : details.expired === false ? message("success", `This license is valid until ${details.expires}.`) : null,
  facts(licenseFacts(details))];
}

export async function render({api, jobs, onLeave}) {
  const slot = messageSlot();
  const details = h("div", {id: "license-details"});
  let installed = null;
  const show = (answer) => {
    installed = answer;
    fill(details, licenseSummary(answer));
  };
  const loadInstalled = async () => {
    try {
      show(await api.optional("/license"));
    } catch (error) {
      fill(details, message("error", sentence(error)));
    }
  };
  const file = field("License file", h("input", {type: "file", name: "license", accept: ".asc,.lic,.txt"}),
    "The license file from the vendor.");
  const submit = h("button", {type: "submit", class: "button primary"}, "Install the license");
  const form = h("form", {class: "form", id: "license-form", novalidate: true}, file, h("div", {class: "actions"}, submit));
  const refused = (error) => {
    // 404 is a license the appliance refuses; its message says why (a bad signature, say).
    const explained = explain(error.message);
    if (error.status !== 0 && (error.status === 404 || explained.field === "license")) {
      file.setError(explained.text);
      slot.show("error", "This license was not installed: see why below. The license installed before stays.");
      file.input.focus();
    } else {
      slot.show("error", sentence(error));
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    file.setError(null);
    const chosen = file.input.files[0];
    if (!chosen) {
      file.setError("Choose the license file.");
      file.input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const candidate = await api.upload("/license/check", {license: chosen}).catch((error) => {
        // 404 without an Error-Message: no such endpoint; 400: bin/license.sh checks only by installing
        if ((error.status === 404 && /^Not found/.test(error.message)) || /only by installing/.test(error.message)) {
          return null;
        }
        throw error;
      });
      if (candidate?.expired === true && installed && installed.expired !== true) {
        const go = await confirmDialog("Replace a valid license with an expired one?", h("div", {},
          h("p", {}, `This license expired on ${candidate.expires}; the one installed is valid until `
            + `${installed.expires}. The application may stop working as licensed.`),
          facts(licenseFacts(candidate))), "Install the expired license", true);
        if (!go) {
          slot.show("info", "Nothing was installed: the valid license stays.");
          return;
        }
      }
      show(await api.upload("/license", {license: chosen}));
      slot.show(installed?.expired ? "warning" : "success",
        installed?.expired ? "The license is installed, but it has expired." : "The license is installed.");
    } catch (error) {
      refused(error);
    } finally {
      submit.disabled = false;
    }
  });
  await loadInstalled();
  // With bin/license.sh the appliance installs a license through a job: show its last run.
  const panel = jobPanel(api, "license", {title: "Last installation by the appliance's script",
    running: "Installing", success: "The license is installed.", failed: "Installing the license failed",
    none: "No license has been installed through the appliance's script."}, {jobs, onLeave});
  const state = await panel.load().catch(() => null);
  return h("div", {class: "grid"}, card("Installed license", details), card("Install a license", slot, form),
    state?.run ? card("The license job", panel) : null);
}
