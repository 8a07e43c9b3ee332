// Network: DHCP or a static address, checked here as the appliance checks it; the settings in
// effect as GET /settings answers them; the settings job as the appliance runs it (a failed
// network.sh is a failure, shown until the next change); after an address change, the
// browser follows the appliance to its new address.

import {h, card, facts, fill, field, messageSlot, sleep} from "./dom.js";
import {jsonFile} from "./api.js";
import {networkProblems} from "./rules.js";
import {jobPanel} from "./jobs.js";
import {explain, showRefusal} from "./words.js";

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

/** The problems of the form, in words for people, by field name. */
export function formProblems(values) {
  const found = {};
  for (const [name, problem] of Object.entries(networkProblems(values))) {
    const explained = explain(problem);
    found[name] = explained.text;
    for (const other of explained.fields || []) found[other] ??= explained.text;
  }
  return found;
}

/** The settings in effect, as GET /settings answers them. */
export function inEffect(current) {
  const network = current?.network || {};
  if (!current?.network) return h("p", {class: "muted"}, "No network settings have been saved on this appliance yet.");
  const dns = [network.dns1, network.dns2].filter(Boolean).join(", ");
  return facts([
    ["Addressing", network.mode === "static" ? "Static address" : "DHCP (automatic)"],
    ["Interface", network.interface], ["Host name", network.hostname],
    ["IP address", network.ip_address], ["Netmask", network.netmask], ["Gateway", network.gateway],
    ["DNS servers", dns], ["NTP server", network.ntpserver], ["Application name", current.app?.name],
  ]);
}

export async function render({api, jobs, onLeave, connection}) {
  let stopped = false;
  onLeave(() => { stopped = true; });
  // 404 until the settings were first saved: the form starts empty.
  let current = (await api.optional("/settings")) || {};
  const network = current.network || {};
  const slot = messageSlot();
  const note = h("div");
  const effect = h("div", {id: "network-in-effect"}, inEffect(current));
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
  const submit = h("button", {type: "submit", class: "button primary"}, "Apply the network settings");
  const form = h("form", {class: "form", id: "network-form", novalidate: true},
    h("fieldset", {class: "segmented"}, h("legend", {}, "Addressing"),
      h("label", {for: "mode-dhcp"}, dhcp, "DHCP (automatic)"), h("label", {for: "mode-static"}, fixed, "Static address")),
    h("div", {class: "columns"}, wrappers.interface, wrappers.hostname),
    staticFields,
    h("div", {class: "columns"}, wrappers.ntpserver, wrappers.app_name),
    h("div", {class: "actions"}, submit));
  // A field is checked when it is left. Not while a button of the form is being pressed:
  // its error would push the button down between press and release, and the click would
  // be lost; the submit checks every field anyway.
  let pressing = false;
  form.addEventListener("pointerdown", (event) => {
    if (event.target.closest("button")) pressing = true;
  });
  const released = () => setTimeout(() => { pressing = false; }, 0);
  document.addEventListener("pointerup", released);
  document.addEventListener("pointercancel", released);
  onLeave(() => {
    document.removeEventListener("pointerup", released);
    document.removeEventListener("pointercancel", released);
  });
  for (const [name, input] of Object.entries(inputs)) {
    input.addEventListener("blur", () => {
      if (pressing || !input.value) return;
      wrappers[name].setError(formProblems(values())[name] || null);
    });
  }
  async function showInEffect() {
    try {
      current = (await api.optional("/settings")) || {};
      fill(effect, inEffect(current));
    } catch {
      // the connection notice says why
    }
  }
  const panel = jobPanel(api, "settings", {title: "Last network change", running: "Applying",
    success: "The network settings are applied.", failed: "Applying the network settings failed",
    none: "The network settings have not been changed on this appliance."}, {
    jobs, onLeave,
    onState: (state, before) => {
      submit.disabled = state.status === "running";
      if (before && before.run !== state.run) showInEffect(); // a new run has saved its settings
    },
    onEnd: async () => {
      slot.clear();
      showInEffect(); // after a failure, the previous settings are back
    },
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    fill(note);
    const formValues = values();
    const problems = formProblems(formValues);
    showProblems(problems);
    const first = FIELDS.map(([name]) => name).concat("app_name").find((name) => problems[name]);
    if (first) {
      slot.show("error", "Some settings are not valid: see the fields marked below.");
      inputs[first].focus();
      return;
    }
    const oldAddress = network.ip_address || null;
    const newAddress = formValues.mode === "static" ? formValues.ip_address.trim() : null;
    submit.disabled = true;
    const previous = panel.run();
    try {
      await api.upload("/settings", {settings: jsonFile(settingsDocument(formValues, current)), confirm: "explicit"});
    } catch (error) {
      showRefusal(slot, error, (explained) => wrappers[
        explained.field === "name" || explained.field === "app" ? "app_name" : explained.field]);
      submit.disabled = false;
      return;
    }
    if (newAddress && newAddress !== oldAddress && newAddress !== window.location.hostname) {
      panel.started(previous);
      await moveTo(newAddress);
      return;
    }
    slot.show("info", "Applying the settings…");
    if (!newAddress && oldAddress) {
      fill(note, h("p", {class: "message message-info"}, "The appliance now takes its address from DHCP: if the "
        + "address changes, this page cannot follow it, and the appliance's console shows the new one."));
    }
    await panel.started(previous);
  });

  async function moveTo(address) {
    // This page may only talk to the address it came from (connect-src 'self'), and the new
    // address's certificate may not be trusted yet: so wait until the old address stops
    // answering, then open the new one.
    const target = newLocation(address);
    const link = h("a", {href: target}, target);
    connection?.expect({title: "The appliance is moving to its new address", keepPage: true,
      text: "This address no longer answers: the appliance is taking its new one. Sign in there and keep the new "
        + "settings, or the appliance puts the previous ones back.", link: target});
    slot.show("warning", "The appliance is moving to ", link, ". This page will open it as soon as the old address "
      + "stops answering; sign in there and keep the new settings.");
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
      connection?.expect(null);
      slot.show("info", "The appliance still answers at this address. Open ", link,
        " yourself once the new address is up.");
      submit.disabled = false;
    }
  }
  await panel.load();
  return h("div", {class: "stack"},
    card("Network settings", slot, note, form),
    h("div", {class: "grid"}, card("In effect now", effect), card("The settings job", panel)));
}
