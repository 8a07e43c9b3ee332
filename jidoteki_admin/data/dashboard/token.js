// API token: change it. The new token is sent once, as newtoken; then everyone signs in again.

import {h, card} from "./dom.js";
import {tokenForm} from "./app.js";

export async function render({api, logout}) {
  return card("Change the API token",
    h("p", {}, "Every client of the Admin API uses this token. Once it is changed, sign in again with the new one."),
    tokenForm(async (value) => {
      await api.post("/setup", {newtoken: value});
      logout("The API token is changed. Sign in with the new token.", "success");
    }, "Change the token"));
}
