// dirconv dashboard: signing in to an API that asks for tokens (DIRCONV_AUTH=tokens).
// Every request goes through `dirconvAuth.fetch`, which sends the token as a Bearer header;
// a 401 brings up the sign-in form and the request is sent again once a token is accepted.
// The token lives in sessionStorage only: it is gone when the browser session ends.
// Actions the role cannot take are hidden (the API refuses them anyway): a reader sees no
// create or change buttons; a member sees change buttons only on its own runs. Mark new
// buttons with data-action="create", or data-action="change" plus data-owner="<run owner>".
"use strict";

window.dirconvAuth = (() => {
  const STORAGE_KEY = "dirconv.token";
  const CREATE_ACTIONS = ['[data-nav="new"]', '[data-nav="new-sweep"]', 'a[href="#/new"]',
    'a[href="#/new-sweep"]', "#submit-run", "#submit-sweep", "#preset-paper",
    '[data-action="create"]'].join(",");
  const CHANGE_ACTIONS = ["#cancel", '[data-action="change"]'].join(",");
  const UNRESTRICTED = ["admin", "open"];  // "open": an API without /me, nothing to hide

  let me = null;          // {user, role} once the API has said
  let signingIn = null;   // the promise every 401 waits on while the form is up

  const storedToken = () => sessionStorage.getItem(STORAGE_KEY);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    node.append(...children);
    return node;
  }

  function withToken(init, token) {
    const headers = new Headers(init.headers || {});
    if (token) headers.set("Authorization", `Bearer ${token}`);
    return { ...init, headers };
  }

  // fetch(), with the token, once the API has said who we are (so that no page is drawn
  // with actions the role cannot take); on a 401, ask for a token and send it again.
  async function authFetch(path, init = {}) {
    await meKnown;
    return send(path, init);
  }

  async function send(path, init) {
    for (;;) {
      const token = storedToken();
      const response = await fetch(path, withToken(init, token));
      if (response.status !== 401) return response;
      // Another request may have signed in meanwhile: drop only the token that was refused.
      if (token && storedToken() === token) sessionStorage.removeItem(STORAGE_KEY);
      if (!storedToken()) await signIn();
    }
  }

  function signIn() {
    if (!signingIn) {
      signingIn = new Promise(showForm).finally(() => { signingIn = null; });
    }
    return signingIn;
  }

  function showForm(resolve) {
    const input = el("input", { type: "password", id: "signin-token", autocomplete: "off",
      spellcheck: "false", "aria-label": "access token", placeholder: "access token" });
    const error = el("div", { id: "signin-error", class: "error", role: "alert" });
    const submit = el("button", { type: "submit", id: "signin-submit", class: "primary" }, "Sign in");
    const form = el("form", { id: "signin-form", class: "card" },
      el("h2", { id: "signin-title" }, "Sign in"),
      el("p", { class: "muted" }, "This dirconv server asks for an access token. An admin creates one with ",
        el("code", {}, "python -m service tokens create --user NAME --role reader"),
        ". It is kept for this browser session only."),
      input, error, el("div", { class: "actions" }, submit));
    const overlay = el("div", { id: "signin", class: "signin-overlay", role: "dialog",
      "aria-modal": "true", "aria-labelledby": "signin-title" }, form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      error.textContent = await tryToken(input.value.trim());
      submit.disabled = false;
      if (!error.textContent) { overlay.remove(); resolve(); }
    });
    document.body.append(overlay);
    input.focus();
  }

  // "" when the API accepts `token` (then it is kept), else what to tell the user.
  async function tryToken(token) {
    if (!token) return "Paste a token first.";
    let response;
    try { response = await fetch("/me", withToken({}, token)); } catch (_) {
      return "The server cannot be reached.";
    }
    if (response.status === 401) return "This token was not accepted: unknown, revoked or expired.";
    if (response.status === 429) {
      return `Too many requests; try again in ${response.headers.get("Retry-After") || "a few"} s.`;
    }
    if (!response.ok) return `Sign-in failed: the server answered ${response.status}.`;
    sessionStorage.setItem(STORAGE_KEY, token);
    setMe(await response.json());
    return "";
  }

  function signOut() {
    sessionStorage.removeItem(STORAGE_KEY);
    location.reload();  // forget what the page showed; the next request asks for a token
  }

  function setMe(answer) {
    me = answer;
    showWhoAmI();
    applyRole();
  }

  function showWhoAmI() {
    document.getElementById("whoami")?.remove();
    if (!me || !me.user) return;  // auth off: nobody to name
    const signOutButton = el("button", { type: "button", id: "sign-out" }, "Sign out");
    signOutButton.addEventListener("click", signOut);
    document.querySelector("header").append(el("span", { id: "whoami", class: "whoami" },
      el("span", {}, "Signed in as ", el("strong", { id: "whoami-user" }, me.user)),
      el("span", { id: "whoami-role", class: "role" }, me.role), signOutButton));
  }

  function canChange(node) {
    if (!me) return false;
    if (UNRESTRICTED.includes(me.role)) return true;
    return me.role === "member" && node.dataset.owner === me.user;
  }

  // Until the API has said who we are, nothing that creates or changes is shown.
  function applyRole() {
    const canCreate = Boolean(me) && (me.role === "member" || UNRESTRICTED.includes(me.role));
    document.querySelectorAll(CREATE_ACTIONS)
      .forEach((node) => node.classList.toggle("auth-hidden", !canCreate));
    document.querySelectorAll(CHANGE_ACTIONS)
      .forEach((node) => node.classList.toggle("auth-hidden", !canChange(node)));
  }

  async function loadMe() {
    try {
      const response = await send("/me", {});
      setMe(response.ok ? await response.json() : { user: null, role: "open" });
    } catch (_) { setMe({ user: null, role: "open" }); }
  }

  // Pages re-render often; hide what the role cannot use before each new node is painted.
  new MutationObserver(applyRole).observe(document.body, { childList: true, subtree: true });
  applyRole();
  const meKnown = loadMe();

  return { fetch: authFetch, signOut, me: () => me };
})();
