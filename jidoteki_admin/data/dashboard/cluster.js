// Cluster: this node's name and role, its peers, the shared secret, and the cluster's state.

import {h, card, facts, field, messageSlot} from "./dom.js";
import {jsonFile} from "./api.js";
import {optionNamed} from "./rules.js";
import {logBox, statusLine} from "./jobs.js";

/** The document POST /cluster takes, from the form's values and peer rows. */
export function clusterDocument(values, peers) {
  const cluster = {};
  for (const name of ["name", "role", "node", "secret"]) {
    if (values[name]) cluster[name] = values[name];
  }
  cluster.peers = peers.filter((p) => p.name || p.address).map((p) => {
    const peer = {name: p.name, address: p.address};
    if (p.port !== "" && p.port !== undefined) peer.port = /^[0-9]+$/.test(p.port) ? Number(p.port) : p.port;
    return peer;
  });
  return {cluster};
}

export async function render({api}) {
  const answer = await api.json("/cluster");
  const current = answer.cluster || {};
  const slot = messageSlot();
  const inputs = {
    name: field("Cluster name", h("input", {type: "text", name: "name", value: current.name ?? ""})),
    node: field("This node's name", h("input", {type: "text", name: "node", value: current.node ?? ""})),
    role: field("Role", h("input", {type: "text", name: "role", value: current.role ?? ""}),
      "This node's role in the cluster, as the appliance names it."),
    // The appliance answers the secret masked: it is never put back in the form, so a masked
    // value cannot be sent as the new secret. Left empty, it is not sent.
    secret: field("Shared secret", h("input", {type: "password", name: "secret", autocomplete: "new-password",
      placeholder: current.secret ? "unchanged" : ""}), "Leave empty to keep the secret the appliance has."),
  };
  const rows = h("div", {class: "stack"});
  const addRow = (peer = {}) => {
    const name = h("input", {type: "text", name: "peer-name", value: peer.name ?? "", "aria-label": "Peer name"});
    const address = h("input", {type: "text", name: "peer-address", value: peer.address ?? "", "aria-label": "Peer address"});
    const port = h("input", {type: "text", name: "peer-port", value: peer.port ?? "", "aria-label": "Peer port",
      inputmode: "numeric"});
    const remove = h("button", {type: "button", class: "button small"}, "Remove");
    const row = h("div", {class: "columns peer"}, field("Peer name", name), field("Address", address),
      field("Port", port), h("div", {class: "actions"}, remove));
    row.values = () => ({name: name.value.trim(), address: address.value.trim(), port: port.value.trim()});
    remove.addEventListener("click", () => row.remove());
    rows.append(row);
  };
  (current.peers || []).forEach(addRow);
  const add = h("button", {type: "button", class: "button small"}, "Add a peer");
  add.addEventListener("click", () => addRow());
  const submit = h("button", {type: "submit", class: "button primary"}, "Save the cluster settings");
  const form = h("form", {class: "form", id: "cluster-form"},
    h("div", {class: "columns"}, inputs.name, inputs.node, inputs.role, inputs.secret),
    h("fieldset", {}, h("legend", {}, "Peers"), rows, h("div", {class: "actions"}, add)),
    h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    for (const wrapper of Object.values(inputs)) wrapper.setError(null);
    const values = Object.fromEntries(Object.entries(inputs).map(([n, w]) => [n, w.input.value.trim()]));
    submit.disabled = true;
    try {
      await api.upload("/cluster", {settings: jsonFile(clusterDocument(values, [...rows.children].map((r) => r.values())))});
      slot.show("success", "The cluster settings are saved; the appliance is applying them.");
    } catch (error) {
      const option = optionNamed(error.message);
      if (option && inputs[option]) inputs[option].setError(error.message);
      slot.show("error", error.message);
    } finally {
      submit.disabled = false;
    }
  });
  const log = logBox("Cluster log");
  const showLog = h("button", {type: "button", class: "link"}, "Show the cluster log");
  showLog.addEventListener("click", async () => {
    try {
      log.set(await api.text("/cluster/log"));
    } catch (error) {
      slot.show("error", error.message);
    }
  });
  log.set(answer.log);
  return h("div", {class: "stack"},
    card("Cluster state", statusLine(answer), facts([["Cluster", current.name], ["This node", current.node],
      ["Role", current.role], ["Peers", (current.peers || []).map((p) => `${p.name} (${p.address}${p.port ? `:${p.port}` : ""})`)
        .join(", ")]]), log, h("p", {}, showLog)),
    card("Cluster settings", slot, form));
}
