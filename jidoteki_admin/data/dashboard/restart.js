// Restart: behind a confirmation; then wait for the appliance to go away and come back. The
// reboot job (it saves the persistent files first) is shown as the appliance ran it.

import {h, card, messageSlot, confirmDialog, sleep} from "./dom.js";
import {jobPanel} from "./jobs.js";
import {duration} from "./format.js";
import {sentence} from "./words.js";

const GIVE_UP_MS = 10 * 60 * 1000;
const STILL_UP_MS = 90 * 1000;

export async function render({api, jobs, onLeave, connection, refreshVersion}) {
  let stopped = false;
  onLeave(() => { stopped = true; });
  const slot = messageSlot();
  const button = h("button", {type: "button", class: "button danger", id: "restart"}, "Restart the appliance");
  const panel = jobPanel(api, "reboot", {title: "Last restart", running: "Restarting",
    success: "The appliance was told to restart.", failed: "The restart failed",
    none: "The appliance has not been restarted from here."}, {jobs, onLeave});
  button.addEventListener("click", async () => {
    if (!await confirmDialog("Restart the appliance?",
      "Its services stop for the time it takes to restart; this page waits for it to come back.", "Restart", true)) return;
    slot.clear();
    button.disabled = true;
    try {
      await api.call("GET", "/reboot");
    } catch (error) {
      slot.show("error", sentence(error));
      button.disabled = false;
      return;
    }
    connection?.expect({title: "Restarting", keepPage: true,
      text: "The appliance is restarting. This page waits for it, and reconnects by itself when it is back."});
    slot.show("warning", "Restarting… This page waits until the appliance answers again.");
    const started = Date.now();
    let wentDown = null;
    while (!stopped && Date.now() - started < GIVE_UP_MS) {
      await sleep(2000);
      let answered = true;
      try {
        await api.call("HEAD", "/version");
      } catch (error) {
        answered = error.status !== 0;
      }
      if (!answered) {
        wentDown ??= Date.now();
        slot.show("warning", "Restarting… The appliance is down; waiting for it to come back.");
      } else if (wentDown) {
        slot.show("success", `The appliance has restarted and answers again (it was away ${
          duration((Date.now() - wentDown) / 1000)}).`);
        button.disabled = false;
        connection?.expect(null);
        refreshVersion();
        panel.refresh().catch(() => null);
        return;
      } else if (Date.now() - started > STILL_UP_MS) {
        connection?.expect(null);
        slot.show("error", "The appliance still answers and did not restart: the restart job's log below says why.");
        button.disabled = false;
        panel.refresh().catch(() => null);
        return;
      }
    }
    connection?.expect(null);
    if (!stopped) slot.show("error", "The appliance did not come back within 10 minutes: check it on its console.");
  });
  await panel.load().catch(() => null);
  return h("div", {class: "stack"}, card("Restart", h("p", {}, "The appliance saves its persistent files, then restarts."),
    slot, h("div", {class: "actions"}, button)), card("The restart job", panel));
}
