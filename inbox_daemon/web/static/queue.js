// The queue page's behaviour: sign in once with the agent's own token (or through the
// reverse proxy's single sign-on), fetch server-rendered fragments, claim and resolve
// through the JSON API, refresh without losing the user's place.
// Customer text only ever arrives inside fragments the server escaped; this script never
// builds markup from data, it moves server-rendered nodes and sets textContent.
"use strict";

(() => {
  const STORE = { token: "inbox-daemon.token" };
  const FILTERS = ["team", "priority", "status", "channel", "language", "incident"];
  const MAX_ROWS = 500;

  const body = document.body;
  const refreshSeconds = Number(body.dataset.refreshS) || 15;
  const pageSize = Number(body.dataset.pageSize) || 100;
  const $ = (selector, root = document) => root.querySelector(selector);
  const rows = $("#rows");
  const panel = $("#detail");
  const form = $("#filters");

  // Who the server says the token (or the proxy) signs in: learnt from /api/v1/me.
  const session = {
    agent: "",
    token: localStorage.getItem(STORE.token) || "",
    signedIn: false,
  };
  const view = {
    filters: filtersFromUrl(),
    expanded: new Set(JSON.parse(sessionStorage.getItem("inbox-daemon.expanded") || "[]")),
    selected: refFromHash(),
    nextCursor: "",
    busy: false,
    again: null,
    more: false,
    timer: 0,
  };

  class ApiError extends Error {
    constructor(status, error) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "http_error";
    }
  }

  // --- talking to the server -------------------------------------------------------------

  async function request(path, { method = "GET", json, quiet = false } = {}) {
    const headers = session.token ? { Authorization: `Bearer ${session.token}` } : {};
    const init = { method, headers, cache: "no-store" };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    const response = await fetch(path, init);
    if (response.ok) return response;
    let error = { message: `${response.status} ${response.statusText}` };
    try {
      error = (await response.json()).error || error;
    } catch (_) {
      // not a JSON error: keep the status line
    }
    if (response.status === 401 && !quiet) {
      session.signedIn = false;
      askSignIn(error.message);
    }
    throw new ApiError(response.status, error);
  }

  async function fragment(path) {
    const response = await request(path);
    return new DOMParser().parseFromString(await response.text(), "text/html");
  }

  function listingQuery(extra) {
    const params = new URLSearchParams();
    for (const name of FILTERS) if (view.filters[name]) params.set(name, view.filters[name]);
    for (const [name, value] of Object.entries(extra)) if (value) params.set(name, value);
    return params.toString();
  }

  // --- the listing -----------------------------------------------------------------------

  // One refresh at a time; a request made meanwhile runs once the current one ends.
  async function refresh({ reloadDetail = false } = {}) {
    if (!session.signedIn || $("#signin").open) return;
    if (view.busy) {
      view.again = { reloadDetail: reloadDetail || (view.again && view.again.reloadDetail) };
      return;
    }
    view.busy = true;
    try {
      const shown = rows.querySelectorAll("tr.item").length;
      const limit = Math.min(MAX_ROWS, Math.max(pageSize, shown));
      const doc = await fragment(`/fragments/queue?${listingQuery({ limit })}`);
      swapRows(doc);
      swapCounts(doc);
      swapChoices(doc);
      if (view.selected && (reloadDetail || !editing())) await loadDetail(view.selected, true);
      updated();
    } catch (error) {
      updated(error);
    } finally {
      view.busy = false;
    }
    if (view.again) {
      const again = view.again;
      view.again = null;
      await refresh(again);
    }
    if (view.more) {
      view.more = false;
      await showMore();
    }
  }

  function swapRows(doc) {
    const fresh = $("#rows", doc);
    const scroll = window.scrollY;
    const focused = document.activeElement && document.activeElement.closest("#rows tr");
    const focusKey = focused ? rowKey(focused) : null;
    rows.replaceChildren(...fresh.childNodes);
    view.nextCursor = fresh.dataset.nextCursor || "";
    $("#more").hidden = !view.nextCursor;
    applyExpanded();
    markSelected();
    window.scrollTo(0, scroll);
    if (focusKey) {
      const again = [...rows.querySelectorAll("tr")].find((row) => rowKey(row) === focusKey);
      const target = again && again.querySelector("a, button");
      if (target) target.focus({ preventScroll: true });
    }
  }

  function rowKey(row) {
    return row.dataset.ref || (row.dataset.incident ? `incident:${row.dataset.incident}` : "");
  }

  // A click on "Show more" during a refresh is kept, and served once the refresh ends.
  async function showMore() {
    if (view.busy) {
      view.more = true;
      return;
    }
    if (!view.nextCursor) return;
    view.busy = true;
    try {
      const query = listingQuery({ cursor: view.nextCursor, limit: pageSize });
      const fresh = $("#rows", await fragment(`/fragments/queue?${query}`));
      for (const row of [...fresh.children]) appendRow(row);
      view.nextCursor = fresh.dataset.nextCursor || "";
      $("#more").hidden = !view.nextCursor;
      applyExpanded();
      markSelected();
    } catch (error) {
      updated(error);
    } finally {
      view.busy = false;
    }
  }

  // A later page may hold more items of an incident already shown: they join its group.
  function appendRow(row) {
    if (row.classList.contains("empty")) return;
    const incident = row.dataset.incident;
    if (incident && groupRows(incident).header) return;
    const member = row.dataset.memberOf;
    const group = member ? groupRows(member) : null;
    if (group && group.header && !row.isConnected) {
      const last = group.members.length ? group.members[group.members.length - 1] : group.header;
      last.after(row);
      return;
    }
    rows.append(row);
  }

  function groupRows(id) {
    const header = rows.querySelector(`tr.incident[data-incident="${CSS.escape(id)}"]`);
    const members = [...rows.querySelectorAll(`tr[data-member-of="${CSS.escape(id)}"]`)];
    return { header, members };
  }

  function toggleIncident(id) {
    if (view.expanded.has(id)) view.expanded.delete(id);
    else view.expanded.add(id);
    sessionStorage.setItem("inbox-daemon.expanded", JSON.stringify([...view.expanded]));
    applyExpanded();
  }

  function applyExpanded() {
    for (const header of rows.querySelectorAll("tr.incident")) {
      const id = header.dataset.incident;
      const open = view.expanded.has(id);
      header.querySelector(".toggle").setAttribute("aria-expanded", String(open));
      for (const member of groupRows(id).members) member.hidden = !open;
    }
  }

  function markSelected() {
    for (const row of rows.querySelectorAll("tr.item")) {
      const selected = row.dataset.ref === view.selected;
      row.classList.toggle("selected", selected);
      if (selected && row.dataset.memberOf && !view.expanded.has(row.dataset.memberOf)) {
        row.hidden = false; // the open item stays visible inside a folded incident
      }
    }
  }

  function swapCounts(doc) {
    const counts = $("#counts", doc);
    $("#counts").replaceChildren(...counts.childNodes);
    for (const button of document.querySelectorAll("#counts .count")) {
      button.classList.toggle("active", button.dataset.priority === view.filters.priority);
    }
  }

  // The choices of the data-driven filters follow the queue, unless the user is in the form.
  function swapChoices(doc) {
    if (form.contains(document.activeElement)) return;
    for (const fresh of doc.querySelectorAll("#choices select")) {
      const select = form.elements[fresh.name];
      select.replaceChildren(...fresh.options);
      const value = view.filters[fresh.name];
      if (value && ![...select.options].some((option) => option.value === value)) {
        select.append(new Option(value, value));
      }
      select.value = value;
    }
  }

  // --- filters -------------------------------------------------------------------------

  function filtersFromUrl() {
    const params = new URLSearchParams(location.search);
    const filters = {};
    for (const name of FILTERS) filters[name] = params.get(name) || "";
    if (!params.has("status")) filters.status = "open";
    return filters;
  }

  function setFilters(changes) {
    Object.assign(view.filters, changes);
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const value = view.filters[name];
      if (name === "status" ? value !== "open" : value) params.set(name, value);
    }
    const search = params.toString();
    history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}${location.hash}`);
    showFilters();
    rows.replaceChildren();
    window.scrollTo(0, 0);
    refresh();
  }

  function showFilters() {
    for (const name of FILTERS) {
      const select = form.elements[name];
      if (!select) continue;
      if (![...select.options].some((option) => option.value === view.filters[name])) {
        select.append(new Option(view.filters[name], view.filters[name]));
      }
      select.value = view.filters[name];
    }
    const incident = $("#incident-filter");
    incident.hidden = !view.filters.incident;
    $(".incident-id", incident).textContent = view.filters.incident ? `#${view.filters.incident}` : "";
    $("#claim-next").disabled = !view.filters.team;
  }

  // --- the detail panel ----------------------------------------------------------------

  function refFromHash() {
    const ref = decodeURIComponent(location.hash.slice(1)).trim();
    return /^FB-[0-9A-Z]{4}-[0-9A-Z]{4}$/i.test(ref) ? ref.toUpperCase() : null;
  }

  function editing() {
    const boxes = [...panel.querySelectorAll("textarea")];
    if (!boxes.length) return false;
    return boxes.some((box) => box.value.trim()) || panel.contains(document.activeElement);
  }

  async function loadDetail(ref, quiet = false) {
    let doc;
    try {
      doc = await fragment(`/fragments/items/${encodeURIComponent(ref)}`);
    } catch (error) {
      if (!quiet || error.status === 404) showDetailProblem(ref, error);
      return;
    }
    if (view.selected !== ref) return; // another item was opened meanwhile
    const article = $("article", doc);
    const same = panel.firstElementChild && panel.firstElementChild.dataset.ref === ref;
    const open = [...panel.querySelectorAll("details[open]")].map((el) => el.className);
    const scroll = panel.scrollTop;
    panel.replaceChildren(article);
    localTimes(article);
    personalise(article);
    if (same) {
      for (const el of article.querySelectorAll("details")) el.open = open.includes(el.className);
      panel.scrollTop = scroll;
    } else {
      panel.scrollTop = 0;
    }
    panel.hidden = false;
    $("#workspace").classList.add("with-detail");
    if (!quiet && !same) panel.focus({ preventScroll: true });
  }

  function showDetailProblem(ref, error) {
    const note = document.createElement("p");
    note.className = "problem";
    note.textContent = error.status === 404 ? `${ref}: ${error.message}` : error.message;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.dataset.action = "close";
    close.setAttribute("aria-label", "Close the detail");
    close.textContent = "\u00d7";
    const head = document.createElement("div");
    head.className = "detail-head";
    head.append(close, note);
    panel.replaceChildren(head);
    panel.hidden = false;
    $("#workspace").classList.add("with-detail");
  }

  // Buttons follow who holds the item: the holder may renew and resolve, others may not.
  function personalise(article) {
    const { status, assignee } = article.dataset;
    const claim = $('[data-action="claim"]', article);
    const resolve = $('[data-action="resolve"]', article);
    if (!claim || status !== "claimed") return;
    if (assignee === session.agent) {
      claim.textContent = "Renew claim";
      $(".holder", article).textContent = `${assignee} (you)`;
    } else {
      claim.disabled = true;
      resolve.disabled = true;
      claim.title = resolve.title = `Claimed by ${assignee}`;
    }
  }

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[data-local]")) {
      const when = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) continue;
      el.title = el.textContent;
      el.textContent = when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    }
  }

  function openItem(ref) {
    view.selected = ref;
    markSelected();
    loadDetail(ref);
  }

  function closeDetail() {
    view.selected = null;
    panel.hidden = true;
    panel.replaceChildren();
    $("#workspace").classList.remove("with-detail");
    if (location.hash) history.pushState(null, "", `${location.pathname}${location.search}`);
    markSelected();
    applyExpanded();
  }

  // The resolve button says what it will do: with a reply written, the customer is sent it
  // ("Resolve and reply"); without, nothing is sent ("Resolve silently").
  async function act(action) {
    const article = $("article", panel);
    const ref = article.dataset.ref;
    const problem = $(".problem", article);
    const json = {};
    if (action === "resolve") {
      const note = $("textarea[name=note]", article).value.trim();
      if (note) json.note = note;
      const reply = $("textarea[name=reply]", article).value.trim();
      if (reply) json.reply = reply;
    }
    for (const button of article.querySelectorAll(".buttons button")) button.disabled = true;
    try {
      const response = await request(`/api/v1/items/${encodeURIComponent(ref)}/${action}`, {
        method: "POST",
        json,
      });
      const item = await response.json();
      toast(action === "resolve" ? `${item.reference} resolved` : `You hold ${item.reference}`);
    } catch (error) {
      problem.textContent = error.message;
      problem.hidden = false;
      for (const button of article.querySelectorAll(".buttons button")) button.disabled = false;
      return;
    }
    await refresh({ reloadDetail: true });
  }

  async function claimNext() {
    const team = view.filters.team;
    try {
      const response = await request("/api/v1/items/claim-next", {
        method: "POST",
        json: { team },
      });
      const item = await response.json();
      toast(`You hold ${item.reference}`);
      location.hash = item.reference;
    } catch (error) {
      toast(error.message);
    }
    await refresh({ reloadDetail: true });
  }

  // --- status line, toast, sign-in ----------------------------------------------------

  function updated(error) {
    const line = $("#updated");
    line.classList.toggle("failed", Boolean(error));
    const time = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    line.textContent = error ? `Update failed: ${error.message}` : `Updated ${time}`;
  }

  let toastTimer = 0;
  function toast(text) {
    const box = $("#toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      box.hidden = true;
    }, 4000);
  }

  function askSignIn(problem) {
    const dialog = $("#signin");
    const note = $("#signin-problem");
    note.textContent = problem || "";
    note.hidden = !problem;
    if (dialog.open) return;
    const fields = $("#signin-form").elements;
    fields.token.value = "";
    dialog.showModal();
    fields.token.focus();
  }

  // Ask the server who this token (or, with none, the proxy's sign-on) belongs to.
  async function whoAmI({ quiet = false } = {}) {
    try {
      const me = await (await request("/api/v1/me", { quiet })).json();
      session.agent = me.name;
      session.signedIn = true;
      $("#who").textContent = me.name;
      $("#who").title = `${me.name} (${me.team}, ${me.role}): sign in with another token`;
      return true;
    } catch (error) {
      return false;
    }
  }

  async function signIn(token) {
    session.token = token;
    localStorage.setItem(STORE.token, token);
    if (await whoAmI()) refresh({ reloadDetail: true });
  }

  // --- wiring ----------------------------------------------------------------------------

  $("#signin-form").addEventListener("submit", () => {
    const fields = $("#signin-form").elements;
    $("#signin").close();
    signIn(fields.token.value.trim());
  });
  $("#who").addEventListener("click", () => askSignIn(""));

  form.addEventListener("change", (event) => {
    if (FILTERS.includes(event.target.name)) setFilters({ [event.target.name]: event.target.value });
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    setFilters({ team: "", priority: "", status: "open", channel: "", language: "", incident: "" });
  });
  $("#clear-incident").addEventListener("click", () => setFilters({ incident: "" }));
  $("#claim-next").addEventListener("click", claimNext);
  $("#more").addEventListener("click", showMore);
  $("#counts").addEventListener("click", (event) => {
    const button = event.target.closest(".count");
    if (!button) return;
    const priority = button.dataset.priority;
    setFilters({ priority: view.filters.priority === priority ? "" : priority });
  });

  function filterByIncident(event) {
    const button = event.target.closest("[data-incident-filter]");
    if (!button) return false;
    setFilters({ incident: button.dataset.incidentFilter, status: "" });
    return true;
  }

  rows.addEventListener("click", (event) => {
    if (filterByIncident(event)) return;
    const toggle = event.target.closest(".toggle");
    if (toggle) {
      toggleIncident(toggle.closest("tr").dataset.incident);
      return;
    }
    const row = event.target.closest("tr.item");
    if (row && !event.target.closest("a")) location.hash = row.dataset.ref;
  });

  panel.addEventListener("click", (event) => {
    if (filterByIncident(event)) return;
    const button = event.target.closest("[data-action]");
    if (!button) return;
    if (button.dataset.action === "close") closeDetail();
    else act(button.dataset.action);
  });

  // The resolve button names what it will do as the reply is written or cleared.
  panel.addEventListener("input", (event) => {
    if (!event.target.matches("textarea[name=reply]")) return;
    const resolve = $('[data-action="resolve"]', panel);
    if (resolve) {
      resolve.textContent = event.target.value.trim() ? "Resolve and reply" : "Resolve silently";
    }
  });

  window.addEventListener("hashchange", () => {
    const ref = refFromHash();
    if (ref) openItem(ref);
    else closeDetail();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden && !$("#signin").open) closeDetail();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
  });

  showFilters();
  view.timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, refreshSeconds * 1000);
  whoAmI({ quiet: !session.token }).then((known) => {
    if (known) refresh({ reloadDetail: true });
    else if (!$("#signin").open) askSignIn("");
  });
})();
