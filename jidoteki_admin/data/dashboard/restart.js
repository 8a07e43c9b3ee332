// Restart: behind a confirmation; then wait for the appliance to go away and come back.

import {h, card, messageSlot, confirmDialog, sleep} from "./dom.js";

const GIVE_UP_MS = 10 * 60 * 1000;
const STILL_UP_MS = 90 * 1000;

export async function render({api, onLeave}) {
  let stopped = false;
  onLeave(() => { stopped = true; });
  const slot = messageSlot();
  const button = h("button", {type: "button", class: "button danger", id: "restart"}, "Restart the appliance");
  button.addEventListener("click", async () => {
    if (!await confirmDialog("Restart the appliance?",
      "Its services stop for the time it takes to restart; this page waits for it to come back.", "Restart", true)) return;
    slot.clear();
    button.disabled = true;
    try {
      await api.call("GET", "/reboot");
    } catch (error) {
      slot.show("error", error.message);
      button.disabled = false;
      return;
    }
    slot.show("warning", "Restarting… This page waits until the appliance answers again.");
    const started = Date.now();
    let wentDown = false;
    while (!stopped && Date.now() - started < GIVE_UP_MS) {
      await sleep(2000);
      let answered = true;
      try {
        await api.call("HEAD", "/version");
      } catch (error) {
        answered = error.status !== 0;
      }
      if (!answered) {
        wentDown = true;
        slot.show("warning", "Restarting… The appliance is down; waiting for it to come back.");
      } else if (wentDown) {
        slot.show("success", "The appliance has restarted and answers again.");
        button.disabled = false;
        return;
      } else if (Date.now() - started > STILL_UP_MS) {
        slot.show("error", "The appliance still answers and did not restart. Its reboot log (in the logs on the "
          + "Support page) says why.");
        button.disabled = false;
        return;
      }
    }
    if (!stopped) slot.show("error", "The appliance did not come back within 10 minutes.");
  });
  return card("Restart", h("p", {}, "The appliance saves its persistent files, then restarts."), slot,
    h("div", {class: "actions"}, button));
}
