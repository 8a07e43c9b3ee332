// Support: the logs and the encrypted debug bundle, for whoever helps with the appliance.

import {h, card, messageSlot} from "./dom.js";
import {sentence} from "./words.js";

function downloader(api, endpoint, filename, label, busyLabel) {
  const slot = messageSlot();
  const button = h("button", {type: "button", class: "button primary"}, label);
  button.addEventListener("click", async () => {
    slot.clear();
    button.disabled = true;
    button.textContent = busyLabel;
    try {
      await api.download(endpoint, filename);
      slot.show("success", `${filename} is downloaded.`);
    } catch (error) {
      slot.show("error", sentence(error));
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  });
  return [slot, h("div", {class: "actions"}, button)];
}

export async function render({api, served}) {
  return h("div", {class: "grid"},
    served.has("/logs") ? card("Logs",
      h("p", {}, "The appliance's log files, compressed (logs.tar.gz). They hold no secrets and are not encrypted."),
      downloader(api, "/logs", "logs.tar.gz", "Download the logs", "Collecting the logs…")) : null,
    served.has("/debug") ? card("Debug bundle",
      h("p", {}, "Commands' output for the vendor's support, encrypted for the vendor (debug-bundle.tar)."),
      downloader(api, "/debug", "debug-bundle.tar", "Download the debug bundle", "Building the bundle…")) : null,
    served.has("/logs") || served.has("/jobs") ? card("Read the logs",
      h("p", {}, "The logs can also be read here, without downloading them: ", h("a", {href: "#/logs"}, "Logs"), "."))
      : null,
    card("Documentation", h("p", {}, h("a", {href: "/docs"}, "The Admin API reference"), " for scripts and curl.")));
}
