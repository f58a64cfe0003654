// The console's entry point: picks the page module named by <body data-page> and redraws it
// whenever the URL state changes (back/forward, or a pivot inside the page).
import { errorBox, h, href, params, session, withParams } from "./lib.js";

const main = document.getElementById("main");

function purposeBar() {
  // Analysts must give a purpose or case reference; it travels in the URL with every link.
  if (session.role !== "analyst") return null;
  const input = h("input", { name: "purpose", value: params().get("purpose") || "",
    placeholder: "case reference", required: true });
  return h("form", { class: "purpose", onsubmit: (ev) => {
    ev.preventDefault();
    const p = Object.fromEntries(params());
    location.assign(withParams(location.pathname, { ...p, purpose: input.value }));
  } }, h("label", {}, "Purpose ", input), h("button", {}, "Set"));
}

async function draw() {
  const page = document.body.dataset.page;
  const controller = new AbortController();
  draw.controller?.abort();
  draw.controller = controller;
  try {
    const mod = await import(`./pages/${page}.js`);
    const content = h("div", { class: "page" });
    main.replaceChildren(...[purposeBar(), content].filter(Boolean));
    await mod.render(content, controller.signal);
  } catch (err) {
    if (err.name === "AbortError") return;
    main.append(errorBox(err));
  }
}

// The header's links keep the analyst's purpose too.
for (const a of document.querySelectorAll("header nav a")) a.href = href(a.getAttribute("href"));
window.addEventListener("popstate", draw);
window.addEventListener("fa:navigate", draw);
draw();
