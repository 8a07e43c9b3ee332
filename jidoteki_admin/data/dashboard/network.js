// Network: DHCP or a static address, checked here as the appliance checks it; after an
// address change, the browser follows the appliance to its new address.

import {h, card, field, messageSlot, sleep} from "./dom.js";
import {jsonFile} from "./api.js";
import {networkProblems, optionNamed} from "./rules.js";

const FIELDS = [
  ["interface", "Interface", "Like eth0."],
  ["hostname", "Host name", "Like admin.example.com."],
  ["ip_address", "IP address", "IPv4 or IPv6.", true],
  ["netmask", "Netmask", "Like 255.255.255.0, or a prefix length like 24.", true],
  ["gateway", "Gateway", null, true],
  ["dns1", "First DNS server", null, true],
  ["dns2", "Second DNS server", null, true],
  ["ntpserver", "NTP server", "A host name or an address, like pool.ntp.org."],
];
const MOVE_TIMEOUT_MS = 120000;

/** The settings document POST /settings takes, from the form's values. */
export function settingsDocument(values, previous = {}) {
  const network = {...(previous.network || {})};
  for (const [name, , , staticOnly] of FIELDS) {
    const value = (values[name] || "").trim();
    if (staticOnly && values.mode !== "static") delete network[name];
    else if (value) network[name] = value;
    else delete network[name];
  }
  delete network.mode;
  const app = {...(previous.app || {})};
  if (values.app_name !== undefined) {
    if (values.app_name.trim()) app.name = values.app_name.trim(); else delete app.name;
  }
  return Object.keys(app).length ? {network, app} : {network};
}

/** Where the dashboard lives once the appliance has a new address (same port and scheme). */
export function newLocation(address, current = window.location) {
  const host = address.includes(":") ? `[${address}]` : address;
  return `${current.protocol}//${host}${current.port ? `:${current.port}` : ""}/`;
}

export async function render({api, onLeave}) {
  let stopped = false;
  onLeave(() => { stopped = true; });
  // 404 until the settings were first saved: the form starts empty.
  const current = (await api.optional("/settings")) || {};
  const network = current.network || {};
  const slot = messageSlot();
  const inputs = {};
  const wrappers = {};
  for (const [name, label, hint] of FIELDS) {
    inputs[name] = h("input", {type: "text", name, value: network[name] ?? "", autocomplete: "off", spellcheck: "false"});
    wrappers[name] = field(label, inputs[name], hint);
  }
  inputs.app_name = h("input", {type: "text", name: "app_name", value: current.app?.name ?? "", autocomplete: "off"});
  wrappers.app_name = field("Application name", inputs.app_name);
  const isStatic = Boolean(network.ip_address) || network.mode === "static";
  const dhcp = h("input", {type: "radio", name: "mode", value: "dhcp", id: "mode-dhcp", checked: !isStatic});
  const fixed = h("input", {type: "radio", name: "mode", value: "static", id: "mode-static", checked: isStatic});
  const staticFields = h("fieldset", {}, h("legend", {}, "Static address"),
    h("div", {class: "columns"}, ["ip_address", "netmask", "gateway", "dns1", "dns2"].map((n) => wrappers[n])));
  const toggle = () => { staticFields.hidden = !fixed.checked; };
  dhcp.addEventListener("change", toggle);
  fixed.addEventListener("change", toggle);
  toggle();
  const values = () => Object.fromEntries([...Object.entries(inputs).map(([n, i]) => [n, i.value]),
    ["mode", fixed.checked ? "static" : "dhcp"]]);
  const showProblems = (problems) => {
    for (const [name, wrapper] of Object.entries(wrappers)) wrapper.setError(problems[name] || null);
  };
  for (const [name, input] of Object.entries(inputs)) {
    input.addEventListener("blur", () => {
      if (input.value) wrappers[name].setError(networkProblems(values())[name] || null);
    });
  }
  const submit = h("button", {type: "submit", class: "button primary"}, "Apply the network settings");
  const form = h("form", {class: "form", id: "network-form", novalidate: true},
    h("div", {class: "segmented", role: "radiogroup", "aria-label": "Addressing"},
      h("label", {for: "mode-dhcp"}, dhcp, "DHCP (automatic)"), h("label", {for: "mode-static"}, fixed, "Static address")),
    h("div", {class: "columns"}, wrappers.interface, wrappers.hostname),
    staticFields,
    h("div", {class: "columns"}, wrappers.ntpserver, wrappers.app_name),
    h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    const formValues = values();
    const problems = networkProblems(formValues);
    showProblems(problems);
    if (Object.keys(problems).length) {
      slot.show("error", "Some settings are not valid: see the fields marked below.");
      return;
    }
    const oldAddress = network.ip_address || null;
    const newAddress = formValues.mode === "static" ? formValues.ip_address.trim() : null;
    submit.disabled = true;
    try {
      await api.upload("/settings", {settings: jsonFile(settingsDocument(formValues, current))});
    } catch (error) {
      const option = optionNamed(error.message);
      const target = option === "name" || option === "app" ? "app_name" : option;
      if (target && wrappers[target]) wrappers[target].setError(error.message);
      slot.show("error", error.message);
      submit.disabled = false;
      return;
    }
    if (newAddress && newAddress !== oldAddress && newAddress !== window.location.hostname) {
      await moveTo(newAddress);
    } else if (!newAddress && oldAddress) {
      slot.show("success", "The settings are saved; the appliance is applying them. It now takes its address from "
        + "DHCP: if the address changes, this page cannot follow it, and the appliance's console shows the new one.");
      submit.disabled = false;
    } else {
      slot.show("success", "The settings are saved; the appliance is applying them.");
      submit.disabled = false;
    }
  });

  async function moveTo(address) {
    // This page may only talk to the address it came from (connect-src 'self'), and the new
    // address's certificate may not be trusted yet: so wait until the old address stops
    // answering, then open the new one.
    const target = newLocation(address);
    const link = h("a", {href: target}, target);
    slot.show("warning", "The appliance is moving to ", link, ". This page will open it as soon as the old address "
      + "stops answering.");
    const started = Date.now();
    while (!stopped && Date.now() - started < MOVE_TIMEOUT_MS) {
      await sleep(2000);
      try {
        await api.call("HEAD", "/version");
      } catch (error) {
        if (error.status === 0) {
          await sleep(3000);
          if (!stopped) window.location.assign(target);
          return;
        }
      }
    }
    if (!stopped) {
      slot.show("info", "The appliance still answers at this address. Open ", link,
        " yourself once the new address is up.");
      submit.disabled = false;
    }
  }
  return h("div", {class: "stack"}, card("Network settings", slot, form));
}
