// Director's web interface: what both pages share. Requests to the admin API, and the admin
// token: when a call answers 401 the page asks for the token, POSTs it to /ui/session (behind the
// admin authentication, so only a valid token is kept) and the server keeps it in the HttpOnly
// cookie `director-token`. A token that cannot be a cookie is sent as a bearer header instead,
// kept only in this tab's session storage.
"use strict";

const director = (window.director = window.director || {});

director.bearer = sessionStorage.getItem("director-bearer") || null;
let loginPending = null;

// A fetch that handles authentication; resolves to the Response (any status but 401).
director.request = async function (method, url, opts = {}) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (director.bearer) headers.Authorization = "Bearer " + director.bearer;
    const res = await fetch(url, { method, headers, credentials: "same-origin", cache: "no-store" });
    if (res.status !== 401) return res;
    if (director.declined) throw new Error("401: the admin API needs a token (press “Token…” above)");
    await director.login("The admin API needs a token.");
  }
  throw new Error("not authenticated");
};

// GET `url` as JSON; throws an Error with the API's message on a non-2xx answer.
director.getJSON = async function (url) {
  const res = await director.request("GET", url);
  if (!res.ok) throw new Error(await director.errorText(res));
  return res.json();
};

// "403 Forbidden: read-only token" from a JSON error body, or the status line.
director.errorText = async function (res) {
  let text = res.status + " " + res.statusText;
  try {
    const body = await res.json();
    if (body && body.error) text = res.status + " " + body.error + (body.detail ? ": " + body.detail : "");
  } catch (_) { /* not JSON */ }
  return text;
};

// Asks for the token (once, however many calls wait for it) and keeps it.
director.login = function (why) {
  director.declined = false;
  if (!loginPending) {
    loginPending = askToken(why).finally(() => { loginPending = null; });
  }
  return loginPending;
};

function askToken(why) {
  const dialog = document.getElementById("login");
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("input[name=token]");
  const error = dialog.querySelector(".error");
  dialog.querySelector(".why").textContent = why;
  error.textContent = "";
  input.value = "";
  return new Promise((resolve, reject) => {
    let done = false;
    // Closed without a token (Cancel, Escape): stop asking until the user presses "Token…".
    dialog.onclose = () => {
      if (done) return;
      director.declined = true;
      reject(new Error("401: no admin token given (press “Token…” above)"));
    };
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      const res = await fetch("/ui/session", {
        method: "POST",
        headers: { Authorization: "Bearer " + token },
        credentials: "same-origin",
      });
      if (res.status === 204) {
        director.bearer = null;
        sessionStorage.removeItem("director-bearer");
      } else if (res.status === 400) {
        // Not cookie-safe: send it as a header from this tab.
        director.bearer = token;
        sessionStorage.setItem("director-bearer", token);
      } else {
        error.textContent = res.status === 401 ? "That token was not accepted." : await director.errorText(res);
        return;
      }
      done = true;
      dialog.close();
      resolve();
    };
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

director.logout = async function () {
  director.bearer = null;
  sessionStorage.removeItem("director-bearer");
  await fetch("/ui/session", { method: "DELETE", credentials: "same-origin" });
  location.reload();
};

// Shows a message in the status line (`error` in red and bold).
director.status = function (text, error = false) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.classList.toggle("error", error);
};

// Small DOM helper: el("td", {class: "num"}, "text", child…).
director.el = function (tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
};

director.fmt = function (n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
};

// "3 min ago", from a Unix ms timestamp.
director.ago = function (ms) {
  if (!ms) return null;
  let s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min ago";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h " + (m % 60) + " min ago";
  return Math.floor(h / 24) + " d ago";
};

document.addEventListener("DOMContentLoaded", () => {
  const logout = document.getElementById("logout");
  if (logout) logout.addEventListener("click", () => director.logout());
  const token = document.getElementById("token");
  if (token) token.addEventListener("click", () => director.login("Enter the admin token.").then(() => director.refresh && director.refresh(), () => {}));
  const cancel = document.querySelector("#login .cancel");
  if (cancel) cancel.addEventListener("click", () => document.getElementById("login").close());
});
