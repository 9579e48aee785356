// The console's only script: live refresh over server-sent events, the alarm sound, and
// small comforts for forms. Plain JavaScript served by the centre itself (no CDN, no build):
// the console must work on an isolated network.
"use strict";

(function () {
  const body = document.body;
  const liveState = document.getElementById("live-state");
  const muteButton = document.getElementById("mute");
  // read by the browser tests: new alarms announced, and how many of those made a sound
  window.consoleBeeps = 0;
  window.consoleSounds = 0;

  // ---- sound: a short two-tone beep made with WebAudio (no audio file to serve) ----
  let audio = null;
  const muted = () => localStorage.getItem("cabinet.muted") === "1";
  function showMute() {
    if (!muteButton) return;
    muteButton.textContent = muted() ? muteButton.dataset.off : muteButton.dataset.on;
    muteButton.setAttribute("aria-pressed", muted() ? "true" : "false");
  }
  function beep() {
    window.consoleBeeps += 1;
    if (muted()) return;
    window.consoleSounds += 1;
    try {
      audio = audio || new AudioContext();
      if (audio.state === "suspended") audio.resume();
      [0, 0.25].forEach((start, i) => {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = i ? 660 : 880;
        gain.gain.setValueAtTime(0.2, audio.currentTime + start);
        gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + start + 0.2);
        osc.connect(gain).connect(audio.destination);
        osc.start(audio.currentTime + start);
        osc.stop(audio.currentTime + start + 0.22);
      });
    } catch (e) {
      console.warn("no sound:", e);
    }
  }
  if (muteButton) {
    showMute();
    muteButton.addEventListener("click", () => {
      localStorage.setItem("cabinet.muted", muted() ? "0" : "1");
      showMute();
      // browsers allow sound only after a click on the page: this click unlocks it
      if (!muted()) { audio = audio || new AudioContext(); audio.resume(); }
    });
  }
  document.addEventListener("click", () => { if (audio && audio.state === "suspended") audio.resume(); });

  // ---- live refresh: merge the changed parts of a fresh copy of this page ----
  function carryTyping(oldNode, newNode) {
    // keep what a person is typing into a comment while the alarm around it changes
    oldNode.querySelectorAll("textarea, input:not([type=hidden]), select").forEach((field) => {
      if (!field.name) return;
      const twin = newNode.querySelector(`[name="${field.name}"]`);
      if (twin && field.value) twin.value = field.value;
    });
  }
  function merge(target, fresh) {
    const old = new Map([...target.children].map((el) => [el.dataset.key, el]));
    const keep = new Set();
    let added = 0;
    let prev = null;
    for (const el of [...fresh.children]) {
      let node = old.get(el.dataset.key);
      if (!node || node.dataset.version !== el.dataset.version) {
        if (node) {
          const focused = node.contains(document.activeElement);
          if (focused) { node.dataset.version = el.dataset.version; } // never yank a form from under a typing person
          else { carryTyping(node, el); node.replaceWith(el); node = el; }
        } else {
          node = el;
          if (el.dataset.key !== "none") { added += 1; el.classList.add("fresh"); }
        }
      }
      keep.add(node);
      const slot = prev ? prev.nextElementSibling : target.firstElementChild;
      if (slot !== node) target.insertBefore(node, slot);
      prev = node;
    }
    [...target.children].forEach((el) => { if (!keep.has(el)) el.remove(); });
    return added;
  }
  let refreshing = false;
  let again = false;
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const answer = await fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
      if (answer.redirected || answer.status === 401) { location.reload(); return; }
      if (!answer.ok) return;
      const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
      let added = 0;
      document.querySelectorAll("[data-live]").forEach((target) => {
        const fresh = doc.querySelector(`[data-live="${target.dataset.live}"]`);
        if (!fresh) return;
        const n = merge(target, fresh);
        if (target.dataset.beep) added += n;
      });
      if (added) beep();
      wireForms();
    } finally {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }
  }
  function setLive(state) {
    if (!liveState) return;
    liveState.textContent = liveState.dataset[state];
    liveState.className = "live " + state;
  }
  if (body.dataset.liveUrl && window.EventSource) {
    // The page says which change mark it was rendered at; the stream's first event says
    // the mark now. Anything stored in between (an alarm raised while the page loaded)
    // is fetched at once instead of waiting for the next change.
    let seen = body.dataset.mark;
    const stream = new EventSource(body.dataset.liveUrl);
    stream.addEventListener("change", (event) => {
      setLive("ok");
      if (event.data === seen) return; // the page is already this fresh
      seen = event.data;
      refresh();
    });
    stream.addEventListener("down", () => setLive("db"));
    stream.onerror = () => setLive("down");
  }

  // ---- forms: one press sends once; the cabinet's answer can take a few seconds ----
  function wireForms() {
    document.querySelectorAll("form[method=post]:not([data-wired])").forEach((form) => {
      form.dataset.wired = "1";
      form.addEventListener("submit", () => {
        form.querySelectorAll("button").forEach((b) => { b.disabled = true; b.classList.add("busy"); });
      });
    });
  }
  wireForms();

  // ---- print buttons (no inline handlers: the page's CSP allows only this script) ----
  document.querySelectorAll('[data-action="print"]').forEach((b) => b.addEventListener("click", () => window.print()));

  // ---- approvals: seconds left before a waiting badge expires ----
  // An expired request stays visible, greyed out and saying so, with its button disabled
  // (the cabinet would refuse it anyway); the next refresh of the page drops it.
  function countDown() {
    document.querySelectorAll("time[data-expires]").forEach((el) => {
      const left = Math.max(0, Math.ceil((Number(el.dataset.expires) - Date.now()) / 1000));
      el.dataset.left = String(left);
      const shown = el.querySelector(".left");
      const expired = left === 0;
      if (shown) shown.textContent = expired ? el.dataset.expired || "expired" : left + (el.dataset.unit || " s");
      el.classList.toggle("expired", expired);
      const card = el.closest("[data-pending]");
      if (!card || !expired) return;
      card.classList.add("expired");
      card.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    });
  }
  countDown();
  setInterval(countDown, 1000);
})();
