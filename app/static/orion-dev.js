// orion development helpers (served only in development).
// The debug panel: outlines the elements each Datastar patch changed and counts patches.
// Toggle it with Alt+D; the choice is remembered for this tab.
const KEY = "orion-debug-panel";
let patches = 0;
let panel = null;

function show(on) {
  sessionStorage.setItem(KEY, on ? "1" : "0");
  if (!on) { panel?.remove(); panel = null; return; }
  if (panel) return;
  panel = document.createElement("div");
  panel.id = "orion-debug-panel";
  panel.setAttribute("role", "status");
  panel.style.cssText = "position:fixed;left:1rem;bottom:1rem;z-index:99998;background:#1d2330;color:#fff;" +
    "font:12px ui-monospace,monospace;padding:.4rem .7rem;border-radius:6px;opacity:.9";
  panel.textContent = `patches: ${patches}`;
  document.body.appendChild(panel);
}

function outline(el) {
  if (!(el instanceof HTMLElement) || el.id === "orion-debug-panel") return;
  el.dataset.orionPatched = "1";
  el.style.outline = "2px solid #f79009";
  el.style.outlineOffset = "1px";
  setTimeout(() => { el.style.outline = ""; el.style.outlineOffset = ""; delete el.dataset.orionPatched; }, 700);
}

const observer = new MutationObserver((records) => {
  if (!panel) return;
  const touched = new Set();
  for (const r of records) {
    if (panel.contains(r.target)) continue;
    // The panel's own arrival in <body> is not a patch.
    if (r.type === "childList" && [...r.addedNodes, ...r.removedNodes].every((n) => n === panel)) continue;
    touched.add(r.type === "characterData" ? r.target.parentElement : r.target);
  }
  if (!touched.size) return;
  patches += 1;
  panel.textContent = `patches: ${patches}`;
  touched.forEach(outline);
});

function start() {
  observer.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true,
                                    attributeFilter: ["class", "checked", "value", "disabled", "id"] });
  if (sessionStorage.getItem(KEY) === "1") show(true);
  document.addEventListener("keydown", (e) => { if (e.altKey && e.key.toLowerCase() === "d") show(!panel); });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
window.orionDebug = show;
