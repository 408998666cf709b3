// SAMIA TAROT demo SPA (hand-written stand-in for a Vite bundle): history.pushState routing, no framework, strict-CSP safe.

const MAJOR_ARCANA = [
  "The Fool", "The Magician", "The High Priestess", "The Empress", "The Emperor",
  "The Hierophant", "The Lovers", "The Chariot", "Strength", "The Hermit",
  "Wheel of Fortune", "Justice", "The Hanged Man", "Death", "Temperance",
  "The Devil", "The Tower", "The Star", "The Moon", "The Sun", "Judgement", "The World",
];
const FEATURED = [7, 13, 42, 78];
const SITE = "SAMIA TAROT";

// Reading #id is deterministic: the card is MAJOR_ARCANA[id % 22] (so #42 is "Judgement").
export function readingFor(id) {
  return {
    id,
    card: MAJOR_ARCANA[id % MAJOR_ARCANA.length],
    orientation: id % 2 === 0 ? "upright" : "reversed",
  };
}

// h("a", { href: "/" }, "Home"): build DOM nodes without innerHTML (text is never parsed as markup).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children.flat());
  return el;
}

const link = (href, text) => h("a", { href }, text);

const ROUTES = [
  { pattern: "/", match: (p) => p === "/", view: home },
  { pattern: "/about", match: (p) => p === "/about", view: about },
  { pattern: "/readings/:id", match: (p) => /^\/readings\/(\d{1,9})$/.exec(p), view: reading },
];

function home() {
  return {
    title: SITE,
    body: [
      h("h1", {}, "Your cards are waiting"),
      h("p", {}, "Pick one of today's featured readings."),
      h("ul", { class: "readings" }, FEATURED.map((id) => {
        const r = readingFor(id);
        return h("li", {}, link(`/readings/${id}`, `Reading #${id}: ${r.card}`));
      })),
    ],
  };
}

function reading(m) {
  const r = readingFor(Number(m[1]));
  return {
    title: `Reading #${r.id}: ${r.card} · ${SITE}`,
    body: [
      h("h1", {}, `Reading #${r.id}`),
      h("div", { class: `card ${r.orientation}`, "data-card": r.card },
        h("span", { class: "card-name" }, r.card),
        h("span", { class: "card-orientation" }, r.orientation)),
      h("p", {}, link("/", "← All readings")),
    ],
  };
}

function about() {
  return {
    title: `About · ${SITE}`,
    body: [
      h("h1", {}, "About SAMIA TAROT"),
      h("p", {}, "A demo single-page app served by Samia Edge, a C++ edge web server."),
      h("p", {}, link("/", "← Home")),
    ],
  };
}

function notFound() {
  return {
    title: `Not found · ${SITE}`,
    body: [
      h("h1", {}, "This card is not in the deck"),
      h("p", {}, "The page you asked for does not exist."),
      h("p", {}, link("/", "← Home")),
    ],
  };
}

function render() {
  const path = location.pathname;
  let route = { pattern: "not-found", view: notFound };
  let match = null;
  for (const r of ROUTES) {
    match = r.match(path);
    if (match) { route = r; break; }
  }
  const { title, body } = route.view(match);
  const view = h("main", { id: "view", "data-route": route.pattern, "data-path": path }, body);
  document.getElementById("view").replaceWith(view);
  document.title = title;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

export function navigate(href) {
  history.pushState(null, "", href);
  render();
  window.scrollTo(0, 0);
}

// Intercept same-origin, plain left clicks on links: client-side navigation instead of a page load.
function onClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target instanceof Element ? event.target.closest("a[href]") : null;
  if (!a || (a.target && a.target !== "_self") || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  event.preventDefault();
  if (url.pathname + url.search + url.hash !== location.pathname + location.search + location.hash) {
    navigate(url.pathname + url.search + url.hash);
  }
}

// Same-origin /health of the edge; shown in the footer, never fatal.
async function showHealth(el) {
  try {
    const res = await fetch("/health", { headers: { Accept: "application/json" }, cache: "no-store" });
    const body = await res.json();
    el.dataset.status = String(body.status);
    el.textContent = `Edge: ${body.status}${body.version ? ` · v${body.version}` : ""}`;
  } catch {
    el.dataset.status = "unavailable";
    el.textContent = "Edge: unavailable";
  }
}

function mount() {
  const health = h("span", { id: "health", "data-status": "pending" }, "Edge: …");
  document.getElementById("root").replaceChildren(
    h("header", { class: "top" },
      h("a", { href: "/", class: "brand" },
        h("img", { src: "/assets/logo-K4nR8vQe.svg", alt: "", width: "40", height: "40" }), SITE),
      h("nav", {}, link("/", "Readings"), link("/about", "About"))),
    h("main", { id: "view" }),
    h("footer", {}, h("span", {}, "© SAMIA TAROT · demo"), health),
  );
  document.addEventListener("click", onClick);
  window.addEventListener("popstate", render);
  render();
  document.documentElement.dataset.ready = "1";
  showHealth(health);
}

mount();
