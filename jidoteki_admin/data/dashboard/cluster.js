// Cluster: this node's name and role, its peers, the shared secret; the settings in effect and
// the cluster job as the appliance runs it.

import {h, card, facts, field, fill, messageSlot} from "./dom.js";
import {jsonFile} from "./api.js";
import {jobPanel} from "./jobs.js";
import {showRefusal} from "./words.js";

/** What GET /cluster answers for a stored secret, and what POST /cluster takes as "keep it". */
export const MASK = "********";
const ROLES = ["primary", "secondary"];

/**
 * The document POST /cluster takes, from the form's values and peer rows. The secret is
 * required: left empty while the appliance has one (storedSecret), MASK asks it to keep it.
 */
export function clusterDocument(values, peers, storedSecret = false) {
  const cluster = {};
  for (const name of ["name", "role", "node", "secret"]) {
    if (values[name]) cluster[name] = values[name];
  }
  if (!cluster.secret && storedSecret) cluster.secret = MASK;
  cluster.peers = peers.filter((p) => p.name || p.address).map((p) => {
    const peer = {name: p.name, address: p.address};
    if (p.port !== "" && p.port !== undefined) peer.port = /^[0-9]+$/.test(p.port) ? Number(p.port) : p.port;
    return peer;
  });
  return {cluster};
}

/**
 * The peer field a server message is about ("peer 2 address", as words.explain names it),
 * among the rows that were sent, in their order; null when none is named.
 */
export function peerField(named, sentRows) {
  const match = /^peer (\d+) (name|address|port)$/.exec(named || "");
  const row = match ? sentRows[Number(match[1]) - 1] : null;
  return row ? row.fields[match[2]] : null;
}

export async function render({api, jobs, onLeave}) {
  const answer = await api.json("/cluster");
  const current = answer.cluster || {};
  const slot = messageSlot();
  const inputs = {
    name: field("Cluster name", h("input", {type: "text", name: "name", value: current.name ?? ""})),
    node: field("This node's name", h("input", {type: "text", name: "node", value: current.node ?? ""})),
    role: field("Role", h("select", {name: "role"}, ROLES.map((role) => h("option", {value: role,
      selected: role === current.role}, role))), "This node's role in the cluster."),
    // The appliance answers the secret masked: it is never put back in the form, so a masked
    // value cannot be typed over by mistake. Left empty, the stored secret is kept.
    secret: field("Shared secret", h("input", {type: "password", name: "secret", autocomplete: "new-password",
      placeholder: current.secret ? "unchanged" : ""}), current.secret
      ? "Leave empty to keep the secret the appliance has."
      : "16 to 256 characters, the same on every node."),
  };
  const rows = h("div", {class: "stack"});
  const addRow = (peer = {}) => {
    const name = h("input", {type: "text", name: "peer-name", value: peer.name ?? "", "aria-label": "Peer name"});
    const address = h("input", {type: "text", name: "peer-address", value: peer.address ?? "", "aria-label": "Peer address"});
    const port = h("input", {type: "text", name: "peer-port", value: peer.port ?? "", "aria-label": "Peer port",
      inputmode: "numeric"});
    const remove = h("button", {type: "button", class: "button small"}, "Remove");
    const fields = {name: field("Peer name", name), address: field("Address", address), port: field("Port", port)};
    const row = h("div", {class: "columns peer"}, Object.values(fields), h("div", {class: "actions"}, remove));
    row.fields = fields;
    row.values = () => ({name: name.value.trim(), address: address.value.trim(), port: port.value.trim()});
    remove.addEventListener("click", () => row.remove());
    rows.append(row);
  };
  (current.peers || []).forEach(addRow);
  const add = h("button", {type: "button", class: "button small"}, "Add a peer");
  add.addEventListener("click", () => addRow());
  const submit = h("button", {type: "submit", class: "button primary"}, "Save the cluster settings");
  const form = h("form", {class: "form", id: "cluster-form", novalidate: true},
    h("div", {class: "columns"}, inputs.name, inputs.node, inputs.role, inputs.secret),
    h("fieldset", {}, h("legend", {}, "Peers"), rows, h("div", {class: "actions"}, add)),
    h("div", {class: "actions"}, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    slot.clear();
    const peerFields = [...rows.children].flatMap((row) => Object.values(row.fields));
    for (const wrapper of [...Object.values(inputs), ...peerFields]) wrapper.setError(null);
    const values = Object.fromEntries(Object.entries(inputs).map(([n, w]) => [n, w.input.value.trim()]));
    submit.disabled = true;
    try {
      const peers = [...rows.children].map((r) => r.values());
      const previous = panel.run();
      await api.upload("/cluster", {settings: jsonFile(clusterDocument(values, peers, Boolean(current.secret)))});
      slot.show("info", "Applying the cluster settings…");
      if (values.secret) {
        current.secret = MASK;
        inputs.secret.input.value = "";
        inputs.secret.input.placeholder = "unchanged";
      }
      await panel.started(previous);
    } catch (error) {
      showRefusal(slot, error, (explained) => peerField(explained.field, [...rows.children].filter((row) => {
        const {name, address} = row.values();
        return name || address;
      })) || (explained.field && inputs[explained.field]));
    } finally {
      submit.disabled = false;
    }
  });
  const state = h("div", {id: "cluster-in-effect"});
  function showState(latest) {
    const settings = latest?.cluster;
    fill(state, settings ? facts([["Cluster", settings.name], ["This node", settings.node],
      ["Role", settings.role], ["Peers", (settings.peers || [])
        .map((p) => `${p.name} (${p.address}${p.port ? `:${p.port}` : ""})`).join(", ") || "none"]])
      : h("p", {class: "muted"}, "No cluster settings have been saved yet."));
  }
  showState(answer);
  const panel = jobPanel(api, "cluster", {title: "Last cluster change", running: "Applying",
    success: "The cluster settings are applied.", failed: "Applying the cluster settings failed",
    none: "The cluster settings have not been changed yet."}, {
    jobs, onLeave,
    onState: (latest) => { submit.disabled = latest.status === "running"; },
    onEnd: async () => {
      slot.clear();
      showState(await api.json("/cluster").catch(() => answer));
    },
  });
  await panel.load();
  return h("div", {class: "stack"},
    card("Cluster settings", slot, form),
    h("div", {class: "grid"}, card("In effect now", state), card("The cluster job", panel)));
}
