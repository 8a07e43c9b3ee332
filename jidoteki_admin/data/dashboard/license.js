// License: the details of the installed license, and uploading a new one.

import {h, card, facts, field, fill, messageSlot, message} from "./dom.js";

const LABELS = {app: "Product", name: "Licensed to", contact: "Contact", users: "Users", expires: "Expires"};

/** The license details as label/value pairs, the known ones first. */
export function licenseFacts(details) {
  const known = Object.keys(LABELS).filter((k) => k in details).map((k) => [LABELS[k], String(details[k])]);
  const other = Object.entries(details).filter(([k]) => !(k in LABELS) && k !== "expired")
    .map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  return [...known, ...other];
}

export async function render({api}) {
  const slot = messageSlot();
  const details = h("div");
  const show = (answer) => {
    if (!answer) {
      details.replaceChildren(h("p", {class: "muted"}, "No valid license is installed."));
      return;
    }
    fill(details, answer.expired ? message("error", "This license has expired.") : null,
      facts(licenseFacts(answer)));
  };
  const file = field("License file", h("input", {type: "file", name: "license", accept: ".asc,.lic,.txt"}),
    "The encrypted license file from the vendor.");
  const submit = h("button", {type: "submit", class: "button primary"}, "Install the license");
  const form = h("form", {class: "form", id: "license-form"}, file, h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    file.setError(null);
    if (!file.input.files[0]) {
      file.setError("Choose a license file.");
      return;
    }
    submit.disabled = true;
    try {
      show(await api.upload("/license", {license: file.input.files[0]}));
      slot.show("success", "The license is installed.");
    } catch (error) {
      // 404 is a license the appliance refuses; its message says why (a bad signature, say).
      slot.show("error", error.status === 404 ? `This license was refused: ${error.message}` : error.message);
    } finally {
      submit.disabled = false;
    }
  });
  show(await api.optional("/license"));
  return h("div", {class: "grid"}, card("Installed license", details), card("Install a license", slot, form));
}
