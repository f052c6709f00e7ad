// The dashboard's only script, hand-written, no framework and no build step. It keeps the API
// key for this tab (sessionStorage: gone when the tab closes, never in a URL), swaps in the
// live parts of a page every few seconds, and sends actions to the API with the key in
// X-API-Key: the session cookie only lets the server render pages, it cannot act.
// Text from the API is only ever set as text (textContent), never parsed as HTML.
"use strict";

(() => {
  const KEY_ITEM = "connectra.apiKey";
  const main = document.querySelector("main");
  const keyForm = document.getElementById("key-form");
  const flash = document.getElementById("flash");

  const storedKey = () => sessionStorage.getItem(KEY_ITEM);
  const forgetKey = () => sessionStorage.removeItem(KEY_ITEM);

  // Signing in and out --------------------------------------------------------------------

  const signIn = document.getElementById("signin-form");
  if (signIn) {
    forgetKey(); // this page means signed out (or a refused key)
    signIn.addEventListener("submit", () => {
      sessionStorage.setItem(KEY_ITEM, signIn.elements.namedItem("api_key").value);
    });
  }
  const signOut = document.getElementById("signout-form");
  if (signOut) signOut.addEventListener("submit", forgetKey);

  function say(text, tone, link) {
    if (!flash) return;
    flash.replaceChildren(document.createTextNode(text));
    if (link) {
      const anchor = document.createElement("a");
      anchor.href = link;
      anchor.rel = "noreferrer";
      anchor.id = "download-link";
      anchor.textContent = "download again";
      flash.append(" ", anchor);
    }
    flash.className = `flash ${tone}`;
    flash.hidden = false;
  }

  // Live parts of the page ----------------------------------------------------------------

  const liveUrl = main ? main.dataset.liveUrl : undefined;
  const every = main ? Number(main.dataset.refreshSeconds || 0) * 1000 : 0;
  let timer;
  let lastHtml;

  const finished = () => document.querySelector('[data-region][data-finished="true"]') !== null;

  async function refresh() {
    const response = await fetch(liveUrl, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      const here = encodeURIComponent(location.pathname + location.search);
      location.assign(`/ui/signin?next=${here}`);
      return;
    }
    if (!response.ok) return;
    const html = await response.text();
    if (html === lastHtml) return;
    lastHtml = html;
    // The server rendered (and escaped) these parts; each replaces its namesake.
    const fresh = new DOMParser().parseFromString(html, "text/html");
    for (const region of fresh.querySelectorAll("[data-region]")) {
      const current = document.querySelector(`[data-region="${region.dataset.region}"]`);
      if (current) current.replaceWith(document.importNode(region, true));
    }
  }

  function schedule(delay = every) {
    clearTimeout(timer);
    if (liveUrl && every && !finished()) timer = setTimeout(tick, delay);
  }

  async function tick() {
    if (!document.hidden) {
      try {
        await refresh();
      } catch {
        // a network blip: the next tick tries again
      }
    }
    schedule();
  }

  async function refreshNow() {
    if (!liveUrl) return;
    try {
      await refresh();
    } catch {
      // the next tick tries again
    }
    schedule();
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) schedule(0);
  });
  schedule();

  // Actions: cancel, retry, download ------------------------------------------------------

  const ACTIONS = {
    cancel: {
      method: "POST",
      path: (uuid) => `/common/jobs/${uuid}/cancel`,
      confirm: "Cancel this job?",
      done: (status) =>
        status === 202
          ? "Cancel requested: the runner stops the job at its next step."
          : "Job cancelled.",
    },
    retry: {
      method: "POST",
      path: (uuid) => `/common/jobs/${uuid}/retry`,
      done: () => "Job reopened: a runner picks it up shortly.",
    },
    download: {
      method: "GET",
      path: (uuid) => `/common/jobs/${uuid}/download-url`,
    },
  };

  let pending;

  function askForKey(then) {
    pending = then;
    keyForm.hidden = false;
    keyForm.querySelector("input").focus();
  }

  if (keyForm) {
    keyForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = keyForm.querySelector("input");
      sessionStorage.setItem(KEY_ITEM, input.value);
      input.value = "";
      keyForm.hidden = true;
      const next = pending;
      pending = undefined;
      if (next) next();
    });
  }

  async function act(name, uuid, button) {
    const action = ACTIONS[name];
    const key = storedKey();
    if (!key) {
      askForKey(() => act(name, uuid, button));
      return;
    }
    if (action.confirm && !window.confirm(action.confirm)) return;
    button.disabled = true;
    try {
      const response = await fetch(action.path(encodeURIComponent(uuid)), {
        method: action.method,
        credentials: "omit", // the key alone authorises an action, never the cookie
        cache: "no-store",
        headers: { "X-API-Key": key, Accept: "application/json" },
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 401) {
        forgetKey();
        say("The API did not accept this tab's key; enter it again.", "error");
        askForKey(() => act(name, uuid, button));
      } else if (!response.ok) {
        say(body.error || `The API answered ${response.status}.`, "error");
      } else if (name === "download") {
        download(body);
      } else {
        say(action.done(response.status), "ok");
      }
    } catch (error) {
      say(`The request failed: ${error.message}`, "error");
    } finally {
      button.disabled = false;
      await refreshNow();
    }
  }

  function download(body) {
    const url = new URL(body.download_url);
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      say("The API answered an unexpected download address.", "error");
      return;
    }
    const minutes = Math.max(1, Math.round(body.expires_in / 60));
    say(`Download started. The link stays valid for ${minutes} min:`, "ok", url.href);
    window.location.assign(url.href);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !(button.dataset.action in ACTIONS)) return;
    event.preventDefault();
    act(button.dataset.action, button.dataset.uuid, button);
  });
})();
