// A network change waiting to be kept: shown on every page, with the time left before the
// appliance puts the previous settings back, and "Keep" and "Undo". The appliance waits only
// when settings-confirm-seconds is set, and only the dashboard's "Keep" confirms a change it
// made (it sends confirm=explicit): its own polling must not keep a change nobody saw work.

import {h, fill, message} from "./dom.js";
import {sentence} from "./words.js";

export function confirmationBanner(api, jobs, servesSettings) {
  const title = h("h2", {id: "confirm-title"}, "Keep the new network settings?");
  const text = h("p", {});
  const count = h("p", {class: "countdown"});
  const said = h("p", {class: "visually-hidden", role: "alert"});
  const result = h("div", {role: "status"});
  const keep = h("button", {type: "button", class: "button primary", id: "confirm-keep"}, "Keep");
  const undo = h("button", {type: "button", class: "button", id: "confirm-undo"}, "Undo");
  const element = h("section", {class: "confirm-banner", "aria-labelledby": "confirm-title", hidden: true},
    h("div", {class: "confirm-inner"}, h("div", {}, title, text, count), h("div", {class: "actions"}, keep, undo)),
    result, said);
  let deadline = null; // local time (ms) the appliance gives up waiting
  let ticker = null;
  let asking = false;
  let shownRun = null; // the settings job's run the banner asks about
  let decidedRun = null; // the run kept or undone here: not asked about again

  function tick() {
    if (deadline === null) return;
    const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    count.textContent = left > 0 ? `The previous settings come back in ${left} s.`
      : "The previous settings are coming back.";
  }

  function hide() {
    deadline = null;
    clearInterval(ticker);
    element.hidden = true;
    said.textContent = "";
  }

  async function look(run) {
    if (asking || !servesSettings() || run === decidedRun) return;
    asking = true;
    try {
      const answer = await api.json("/settings/confirm");
      if (!answer.waiting || !answer.explicit || run === decidedRun) {
        if (!element.hidden && deadline !== null) hide();
        return;
      }
      const appeared = element.hidden || shownRun !== run;
      shownRun = run;
      deadline = Date.now() + answer["seconds-left"] * 1000;
      text.textContent = "The appliance is using the new network settings. If this page still works as it should, "
        + "keep them; otherwise, or if nothing is chosen in time, it puts the previous ones back.";
      keep.disabled = false;
      undo.disabled = false;
      fill(result);
      element.hidden = false;
      tick();
      clearInterval(ticker);
      ticker = setInterval(tick, 1000);
      if (appeared) {
        said.textContent = `Keep the new network settings? The previous ones come back in ${answer["seconds-left"]} seconds.`;
        const active = document.activeElement;
        if (!active || active === document.body || active.closest("main") || active.type === "submit") keep.focus();
      }
    } catch {
      // no answer: the connection notice says so; 404: this appliance has no confirmation
    } finally {
      asking = false;
    }
  }

  async function decide(action) {
    keep.disabled = true;
    undo.disabled = true;
    decidedRun = shownRun;
    try {
      await api.post("/settings/confirm", {action});
      clearInterval(ticker);
      count.textContent = "";
      fill(result, message(action === "KEEP" ? "success" : "info", action === "KEEP"
        ? "The new network settings are kept." : "Putting the previous network settings back…"));
      jobs.now();
      setTimeout(hide, 4000);
    } catch (error) {
      decidedRun = null;
      fill(result, message("error", sentence(error)));
      keep.disabled = false;
      undo.disabled = false;
    }
  }

  keep.addEventListener("click", () => decide("KEEP"));
  undo.addEventListener("click", () => decide("UNDO"));
  const unsubscribe = jobs.subscribe((list) => {
    const settings = list.find((job) => job.name === "settings");
    if (settings?.status === "running") look(settings.run);
    else if (deadline !== null) hide();
  });
  element.stop = () => {
    unsubscribe();
    clearInterval(ticker);
  };
  element.look = look;
  return element;
}
