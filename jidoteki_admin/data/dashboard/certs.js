// TLS certificates: the certificate in service, and uploading a new one.

import {h, card, facts, field, fill, messageSlot, message} from "./dom.js";
import {follow, statusLine, statusLog, logBox} from "./jobs.js";

/** How soon the certificate expires, as a message kind and text; null when unknown. */
export function expiry(details) {
  const days = details?.["days-left"];
  if (typeof days !== "number") return null;
  if (days < 0) return ["error", `The certificate in service expired ${-days} days ago.`];
  if (days <= 30) return ["warning", `The certificate in service expires in ${days} days.`];
  return ["success", `The certificate in service is valid for ${days} more days.`];
}

export async function render({api, onLeave}) {
  let stopped = false;
  onLeave(() => { stopped = true; });
  const slot = messageSlot();
  const status = h("div");
  const log = logBox("Certificate update log");
  const inService = h("div");
  const show = (answer) => {
    status.replaceChildren(statusLine(answer));
    log.set(statusLog(answer));
    const soon = expiry(answer);
    // load-error: installed, but the listener could not load it; the old one is still served.
    fill(inService,
      answer?.["load-error"] ? message("error", answer["load-error"]) : null,
      soon ? message(...soon) : null,
      facts([["Subject", answer?.subject], ["Expires", answer?.expires],
        ["Days left", typeof answer?.["days-left"] === "number" ? String(answer["days-left"]) : null]]));
  };
  const files = {
    public: field("Certificate (PEM)", h("input", {type: "file", name: "public", accept: ".pem,.crt,.cer"}),
      ["The server certificate: a file starting with ", h("code", {}, "-----BEGIN CERTIFICATE-----"), "."]),
    private: field("Private key (PEM, unencrypted RSA or EC)", h("input", {type: "file", name: "private", accept: ".key,.pem"})),
    ca: field("CA or intermediate certificate (optional)", h("input", {type: "file", name: "ca", accept: ".pem,.crt,.cer"})),
  };
  const submit = h("button", {type: "submit", class: "button primary"}, "Install the certificate");
  const form = h("form", {class: "form", id: "certs-form"}, Object.values(files), h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    const chosen = {};
    for (const [name, wrapper] of Object.entries(files)) {
      wrapper.setError(null);
      if (wrapper.input.files[0]) chosen[name] = wrapper.input.files[0];
    }
    if (!chosen.public) files.public.setError("Choose the certificate file.");
    if (!chosen.private) files.private.setError("Choose the private key file.");
    if (!chosen.public || !chosen.private) return;
    submit.disabled = true;
    try {
      await api.upload("/certs", chosen);
      slot.show("info", "The certificate is uploaded; the appliance is installing it.");
      const last = await follow(api, "/certs", {onStatus: show, isStopped: () => stopped,
        onError: (error) => slot.show("error", error.message)});
      if (last?.status === "success" && !last["load-error"]) {
        slot.show("success", "The certificate is installed. Reload the page to use it.");
      }
      if (last?.["load-error"]) slot.show("error", "The certificate is installed but not in service: see above.");
      if (last?.status === "failed") slot.show("error", "Installing the certificate failed: see the log.");
    } catch (error) {
      slot.show("error", error.message);
    } finally {
      submit.disabled = false;
    }
  });
  const current = await api.optional("/certs");
  show(current);
  return h("div", {class: "grid"}, card("Certificate in service", inService, status, log),
    card("Install a certificate", slot, form));
}
