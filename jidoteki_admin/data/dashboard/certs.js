// TLS certificates: the certificate in service (who issued it, its names, its fingerprint,
// its dates), and installing a new one: checked first (POST /certs/check), with a question
// before one that expires sooner than the one in service replaces it; then the certs job.

import {h, card, facts, field, fill, messageSlot, message, confirmDialog} from "./dom.js";
import {day, fullDate} from "./format.js";
import {jobPanel} from "./jobs.js";
import {showRefusal} from "./update.js";

/** How soon the certificate expires, as a message kind and text; null when unknown. */
export function expiry(details) {
  const days = details?.["days-left"];
  if (typeof days !== "number") return null;
  if (days < 0) return ["error", `The certificate in service expired ${-days} days ago: browsers refuse it. Install a new one.`];
  if (days <= 30) return ["warning", `The certificate in service expires in ${days} days: install its renewal soon.`];
  return ["success", `The certificate in service is valid for ${days} more days.`];
}

/** A certificate's facts as people compare them. */
export function certificateFacts(details) {
  if (!details?.subject) return h("p", {class: "muted"}, "The appliance does not say which certificate it serves.");
  const names = details["alt-names"];
  return facts([
    ["Subject", details.subject], ["Issued by", details.issuer],
    ["Names", Array.isArray(names) ? (names.length ? names.join(", ") : "none (browsers will warn)") : null],
    ["Valid from", details["not-before"] ? fullDate(details["not-before"]) : null],
    ["Expires", details.expires ? fullDate(details.expires) : null],
    ["SHA-256 fingerprint", details.fingerprint ? h("code", {class: "fingerprint"}, details.fingerprint) : null],
  ]);
}

/** Whether replacing `current` with `candidate` needs the administrator's word, and why. A
 * self-signed certificate in service (the appliance's own, made at its first start) is there
 * to be replaced: one that expires sooner is no concern then. */
export function replacementConcerns(current, candidate) {
  const concerns = [];
  const selfSigned = current?.issuer && current.issuer === current.subject;
  const now = typeof current?.["days-left"] === "number" && !selfSigned ? current["days-left"] : null;
  const next = candidate["days-left"];
  if (next < 0) concerns.push(`it expired on ${day(candidate.expires)}`);
  else if (now !== null && next < now) {
    concerns.push(`it expires on ${day(candidate.expires)}, sooner than the one in service (${day(current.expires)})`);
  }
  for (const warning of candidate.warnings || []) {
    if (/not valid yet/.test(warning)) concerns.push("it is not valid yet by the appliance's clock");
  }
  return concerns;
}

export async function render({api, jobs, onLeave}) {
  const slot = messageSlot();
  const inService = h("div", {id: "certs-in-service"});
  const show = (answer) => {
    const soon = expiry(answer);
    // load-error: installed, but the listener could not load it; the old one is still served.
    fill(inService,
      answer?.["load-error"] ? message("error", "The new certificate is installed but could not be put in service; "
        + `the previous one is still served. The appliance said: ${answer["load-error"]}`) : null,
      soon ? message(...soon) : null,
      certificateFacts(answer));
  };
  let current = await api.optional("/certs");
  show(current);
  const panel = jobPanel(api, "certs", {title: "Last installation", running: "Installing",
    success: "The certificate is installed and in service. Reload the page to use it.",
    failed: "Installing the certificate failed", none: "No certificate has been installed from here yet."}, {
    jobs, onLeave,
    onEnd: async () => {
      slot.clear();
      current = await api.optional("/certs").catch(() => current);
      show(current);
    },
  });
  const files = {
    public: field("Certificate (PEM)", h("input", {type: "file", name: "public", accept: ".pem,.crt,.cer"}),
      ["The server certificate, optionally followed by its chain: a file starting with ",
        h("code", {}, "-----BEGIN CERTIFICATE-----"), "."]),
    private: field("Private key (PEM, unencrypted RSA or EC)", h("input", {type: "file", name: "private", accept: ".key,.pem"})),
    ca: field("CA or intermediate certificate (optional)", h("input", {type: "file", name: "ca", accept: ".pem,.crt,.cer"})),
  };
  const submit = h("button", {type: "submit", class: "button primary"}, "Install the certificate");
  const form = h("form", {class: "form", id: "certs-form", novalidate: true}, Object.values(files),
    h("div", {class: "actions"}, submit));
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
    if (!chosen.public || !chosen.private) {
      (chosen.public ? files.private : files.public).input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const candidate = await api.upload("/certs/check", chosen).catch((error) => {
        if (error.status === 404) return null; // an appliance that cannot check first
        throw error;
      });
      if (candidate) {
        const concerns = replacementConcerns(current, candidate);
        if (concerns.length && !await confirmDialog("Install this certificate?", h("div", {},
          h("p", {}, `Check before it replaces the certificate in service: ${concerns.join("; ")}.`),
          certificateFacts(candidate)), "Install it anyway", true)) {
          slot.show("info", "Nothing was installed: the certificate in service stays.");
          return;
        }
      }
      const previous = panel.run();
      await api.upload("/certs", chosen);
      slot.show("info", "The certificate is uploaded; the appliance is installing it.");
      await panel.started(previous);
    } catch (error) {
      showRefusal(error, files, slot);
    } finally {
      submit.disabled = false;
    }
  });
  await panel.load();
  return h("div", {class: "grid"}, card("Certificate in service", inService),
    card("Install a certificate", slot, form), card("The certificate job", panel));
}
