// Building the page. Every text goes in through textContent, never innerHTML, so nothing the
// appliance answers can become markup.

/** An element: h("p", {class: "x", onclick: f}, "text", child, ...). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace what an element holds. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A card: the unit every page is made of. */
export function card(title, ...children) {
  return h("section", {class: "card"}, title ? h("h2", {}, title) : null, ...children);
}

/** A message box: kind is "error", "success", "info" or "warning". It is not announced by
 * itself: a page's results go in a messageSlot, which is. */
export function message(kind, ...children) {
  const icon = {error: "Error: ", warning: "Warning: "}[kind];
  return h("div", {class: `message message-${kind}`},
    icon ? h("span", {class: "visually-hidden"}, icon) : null, ...children);
}

/** A place for the result of what the administrator did, one message at a time: the only
 * kind of region the page announces (with the job panels' outcomes). */
export function messageSlot() {
  const slot = h("div", {class: "message-slot", role: "status"});
  slot.show = (kind, ...children) => fill(slot, message(kind, ...children));
  slot.clear = () => fill(slot);
  return slot;
}

/** A labelled form field with its hint and a place for its error. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const error = h("p", {class: "field-error", id: `${id}-error`, hidden: true});
  const hintElement = hint ? h("p", {class: "hint", id: `${id}-hint`}, hint) : null;
  input.setAttribute("aria-describedby", hint ? `${id}-error ${id}-hint` : `${id}-error`);
  const wrapper = h("div", {class: "field"}, h("label", {for: id}, label), input, hintElement, error);
  wrapper.input = input;
  wrapper.setError = (text) => {
    error.textContent = text || "";
    error.hidden = !text;
    input.classList.toggle("invalid", Boolean(text));
    if (text) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  };
  return wrapper;
}

/** A definition list of [term, value] pairs, skipping empty values. */
export function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** A progress bar with its label. */
export function progress(label) {
  const bar = h("div", {class: "progress-bar"});
  const text = h("span", {class: "progress-text"}, "");
  const element = h("div", {class: "progress", role: "progressbar", "aria-label": label,
    "aria-valuemin": 0, "aria-valuemax": 100}, h("div", {class: "progress-track"}, bar), text);
  element.set = (percent, caption) => {
    const value = Math.max(0, Math.min(100, Math.round(percent)));
    bar.style.width = `${value}%`;
    element.setAttribute("aria-valuenow", value);
    text.textContent = caption ?? `${value} %`;
  };
  element.set(0, "");
  return element;
}

export {bytes} from "./format.js";

/** A promise that resolves after ms milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A modal confirmation; resolves true when confirmed. ``text`` may be nodes (details to
 * weigh); the safe choice, Cancel, has the focus. */
export function confirmDialog(title, text, confirmLabel, danger = false) {
  return new Promise((resolve) => {
    const titleId = `d-${Math.random().toString(36).slice(2, 9)}`;
    const dialog = h("dialog", {class: "dialog", "aria-labelledby": titleId});
    const previous = document.activeElement;
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      if (previous && previous.isConnected) previous.focus();
      resolve(answer);
    };
    dialog.append(
      h("h2", {id: titleId}, title), typeof text === "string" ? h("p", {}, text) : text,
      h("div", {class: "actions"},
        h("button", {type: "button", class: "button", onclick: () => close(false)}, "Cancel"),
        h("button", {type: "button", class: danger ? "button danger" : "button primary",
          onclick: () => close(true)}, confirmLabel)));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector("button").focus();
  });
}
