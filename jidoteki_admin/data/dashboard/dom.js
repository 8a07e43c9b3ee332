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

/** A message box: kind is "error", "success", "info" or "warning". */
export function message(kind, ...children) {
  return h("div", {class: `message message-${kind}`, role: kind === "error" ? "alert" : "status"}, ...children);
}

/** A place for one message at a time, which a page sets and clears. */
export function messageSlot() {
  const slot = h("div", {class: "message-slot"});
  slot.show = (kind, ...children) => fill(slot, message(kind, ...children));
  slot.clear = () => fill(slot);
  return slot;
}

/** A labelled form field with its hint and a place for its error. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const error = h("p", {class: "field-error", id: `${id}-error`, hidden: true});
  input.setAttribute("aria-describedby", `${id}-error`);
  const wrapper = h("div", {class: "field"}, h("label", {for: id}, label), input,
    hint ? h("p", {class: "hint"}, hint) : null, error);
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

/** A status badge: running, success, failed, or none. */
export function badge(status) {
  const known = ["running", "success", "failed"].includes(status);
  return h("span", {class: `badge badge-${known ? status : "none"}`}, status || "none yet");
}

/** Bytes as people read them: 1.5 MB. */
export function bytes(count) {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = count;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${count} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A promise that resolves after ms milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A modal confirmation; resolves true when confirmed. */
export function confirmDialog(title, text, confirmLabel, danger = false) {
  return new Promise((resolve) => {
    const dialog = h("dialog", {class: "dialog", "aria-label": title});
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    dialog.append(
      h("h2", {}, title), h("p", {}, text),
      h("div", {class: "actions"},
        h("button", {type: "button", class: "button", onclick: () => close(false)}, "Cancel"),
        h("button", {type: "button", class: danger ? "button danger" : "button primary",
          onclick: () => close(true)}, confirmLabel)));
    dialog.addEventListener("cancel", () => close(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}
