// The connection to the appliance, as every request finds it. The first request that gets
// no answer puts a notice over the whole page at once: what the page shows is from the
// moment the appliance last answered, and may no longer be true. The page then asks again
// by itself, and as soon as the appliance answers (after a restart, say) the notice goes and
// the page is read again from the appliance.

import {h, fill} from "./dom.js";
import {when} from "./format.js";

const RETRY_SECONDS = [2, 2, 3, 5];

/**
 * The notice and its retries. probe() asks the appliance something (its answer reaches
 * answered() through the API client); onBack() runs when it answers again; shell is what
 * goes stale under the notice.
 */
export function connectionNotice({probe, onBack, shell}) {
  let lost = false;
  let lastAnswer = new Date();
  let timer = null;
  let attempt = 0;
  let waitLeft = 0;
  let expected = null; // {title, text, link}: a disconnection the page caused (a restart)
  const title = h("h2", {id: "disconnected-title"}, "Disconnected");
  const text = h("p", {id: "disconnected-text"});
  const stale = h("p", {class: "stale-note"});
  const retry = h("p", {class: "retry muted"});
  const link = h("p", {class: "moved"});
  const now = h("button", {type: "button", class: "button primary"}, "Try again now");
  now.addEventListener("click", () => check());
  const panel = h("div", {class: "disconnected-panel"}, h("span", {class: "disconnected-icon", "aria-hidden": "true"}),
    title, text, link, stale, retry, h("div", {class: "actions"}, now));
  const element = h("div", {class: "disconnected", role: "alertdialog", "aria-modal": "true",
    "aria-labelledby": "disconnected-title", "aria-describedby": "disconnected-text", hidden: true}, panel);

  function describe() {
    const host = window.location.host;
    title.textContent = expected?.title || "Disconnected";
    text.textContent = expected?.text || `The appliance at ${host} does not answer. Check that it is on and that `
      + "this computer reaches it over the network.";
    fill(link, expected?.link ? ["Its new address: ", h("a", {href: expected.link}, expected.link)] : null);
    link.hidden = !expected?.link;
    stale.textContent = `What this page shows is from ${when(lastAnswer)}, when the appliance last answered, `
      + "and may no longer be true.";
    retry.textContent = waitLeft > 0 ? `Trying again in ${waitLeft} s…` : "Trying again…";
  }

  function schedule() {
    clearInterval(timer);
    waitLeft = RETRY_SECONDS[Math.min(attempt, RETRY_SECONDS.length - 1)];
    attempt += 1;
    describe();
    timer = setInterval(() => {
      waitLeft -= 1;
      if (waitLeft <= 0) {
        clearInterval(timer);
        check();
      } else {
        describe();
      }
    }, 1000);
  }

  async function check() {
    clearInterval(timer);
    waitLeft = 0;
    describe();
    try {
      await probe();
    } catch {
      // answered() has heard of it
    }
    if (lost) schedule();
  }

  /** Every request's fate: answered (true) or not (false). */
  function answered(ok) {
    if (ok) {
      lastAnswer = new Date();
      if (!lost) return;
      lost = false;
      clearInterval(timer);
      element.hidden = true;
      shell.inert = false;
      shell.classList.remove("stale");
      const reason = expected;
      if (!reason?.keepPage) expected = null; // a page that follows the return itself says when it is over
      attempt = 0;
      onBack(reason);
      return;
    }
    if (lost) return;
    lost = true;
    element.hidden = false;
    shell.inert = true; // nothing under the notice can be clicked or reached by Tab
    shell.classList.add("stale");
    schedule();
    now.focus();
  }

  element.answered = answered;
  element.isLost = () => lost;
  /** The next disconnection is one the page caused: say so instead of "Disconnected"
   * ({title, text, link}; keepPage: the page follows the appliance's return itself). */
  element.expect = (reason) => {
    expected = reason;
    if (lost) describe();
  };
  element.stop = () => clearInterval(timer);
  return element;
}
