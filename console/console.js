// The admin console: signs the admin in, calls the admin views with the admin's token and
// renders them with DOM calls only (no innerHTML, no inline script or style: the page's
// Content-Security-Policy allows neither).
"use strict";

(function () {
  const API = "/api";
  const PAGE_SIZE = 50;
  const RUN_REFRESH_MS = 2000;
  // The overview is a snapshot a background pass refreshes: while it is refreshing (or before
  // the first one) ask again every 2 s, for at most a minute (a pass over 100,000 devices takes
  // well under that).
  const OVERVIEW_REFRESH_MS = 2000;
  const OVERVIEW_WAIT_MS = 60000;
  const DEMO_TOKEN_KEY = "cmboot.console.demoToken";
  const AGES = [
    ["", "Any time"],
    ["1h", "Older than 1 hour"],
    ["24h", "Older than 1 day"],
    ["7d", "Older than 7 days"],
  ];
  const AGE_MS = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };

  const state = { config: null, msal: null, account: null, token: null, timer: null, overviewWaitUntil: null };

  // ---- DOM helpers ------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, String(value));
    }
    for (const child of children) node.append(child);
    return node;
  }
  const $ = (id) => document.getElementById(id);
  function show(view) {
    $("view").replaceChildren(view);
  }
  function showError(message) {
    const box = $("error");
    box.textContent = message || "";
    box.hidden = !message;
  }
  function when(value) {
    if (!value) return "—";
    const date = new Date(value);
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }
  function ago(value) {
    if (!value) return "";
    const minutes = Math.round((Date.now() - new Date(value).getTime()) / 60000);
    if (minutes < 60) return `${minutes} min ago`;
    if (minutes < 48 * 60) return `${Math.round(minutes / 60)} h ago`;
    return `${Math.round(minutes / 1440)} days ago`;
  }
  function badge(diagnosis) {
    return el("span", { class: `badge sev-${diagnosis.severity}`, "data-diagnosis": diagnosis.code, text: diagnosis.code });
  }

  // ---- sign-in ----------------------------------------------------------------------------
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = el("script", { src });
      script.addEventListener("load", resolve);
      script.addEventListener("error", () => reject(new Error(`${src} did not load`)));
      document.head.append(script);
    });
  }

  async function startMsal() {
    await loadScript(`${API}/console/msal-browser.js`);
    const app = new window.msal.PublicClientApplication({
      auth: {
        clientId: state.config.clientId,
        authority: state.config.authority,
        redirectUri: `${location.origin}${API}/console`,
      },
      cache: { cacheLocation: "sessionStorage" },
    });
    await app.initialize();
    const result = await app.handleRedirectPromise();
    if (result && result.account) app.setActiveAccount(result.account);
    state.msal = app;
    state.account = app.getActiveAccount() || app.getAllAccounts()[0] || null;
  }

  async function accessToken() {
    if (state.config.signIn === "demo") return state.token;
    if (!state.account) return null;
    try {
      const result = await state.msal.acquireTokenSilent({ scopes: state.config.scopes, account: state.account });
      return result.accessToken;
    } catch (error) {
      if (error instanceof window.msal.InteractionRequiredAuthError) {
        await state.msal.acquireTokenRedirect({ scopes: state.config.scopes, account: state.account });
      }
      throw error;
    }
  }

  async function signIn() {
    if (state.config.signIn === "msal") {
      await state.msal.loginRedirect({ scopes: state.config.scopes });
      return;
    }
    // Development: the demo issuer mints an admin token; it is then used as MSAL's would be.
    const answer = await fetch(state.config.demoTokenUrl, { method: "POST" });
    if (!answer.ok) throw new Error(`The demo issuer answered ${answer.status}.`);
    const body = await answer.json();
    state.token = body.access_token;
    sessionStorage.setItem(DEMO_TOKEN_KEY, state.token);
    signedIn();
  }

  function signOut() {
    state.token = null;
    sessionStorage.removeItem(DEMO_TOKEN_KEY);
    if (state.msal && state.account) {
      state.msal.logoutRedirect({ account: state.account });
      return;
    }
    signedOut();
  }

  function signedIn() {
    $("sign-in-panel").hidden = true;
    $("sign-out").hidden = false;
    const name = state.account ? state.account.username : "demo admin (Development)";
    $("who").textContent = name;
    route();
  }

  function signedOut(message) {
    if (state.timer) clearTimeout(state.timer);
    $("sign-in-panel").hidden = false;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("view").replaceChildren();
    showError(message || "");
  }

  // ---- API --------------------------------------------------------------------------------
  class SignInNeeded extends Error {}

  async function api(path) {
    const token = await accessToken();
    if (!token) throw new SignInNeeded("Sign in first.");
    const answer = await fetch(`${API}${path}`, { headers: { Authorization: `Bearer ${token}` } });
    if (answer.status === 401) {
      state.token = null;
      sessionStorage.removeItem(DEMO_TOKEN_KEY);
      throw new SignInNeeded("Your sign-in expired or was refused: sign in again.");
    }
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.detail || `${answer.status} ${body.title || ""}`);
    return body;
  }

  // ---- views ------------------------------------------------------------------------------
  async function overview() {
    const [data, catalogue] = await Promise.all([api("/devices?summary=overview"), diagnosisCatalogue()]);
    const stageCards = Object.entries(data.counts).map(([stage, count]) =>
      el("div", { class: "card" },
        el("a", { href: `#/devices?stage=${stage}` },
          el("div", { class: "label", text: stage }),
          el("div", { class: "value", "data-stage": stage, text: count })))
    );
    const diagnoses = Object.entries(data.diagnoses).filter(([, count]) => count > 0);
    return el("section", { "data-view": "overview" },
      el("h1", { text: "Fleet overview" }),
      overviewFreshness(data),
      el("div", { class: "cards" },
        el("div", { class: "card" }, el("div", { class: "label", text: "devices" }),
          el("div", { class: "value", "data-total": "", text: data.total })),
        stageCards),
      el("h2", { text: "Installs over the last 30 days" }),
      installChart(data.installsByDay),
      el("h2", { text: "By diagnosis" }),
      diagnoses.length === 0
        ? el("p", { class: "muted", text: "No device has reported yet." })
        : el("table", {},
          el("thead", {}, el("tr", {}, el("th", { text: "Diagnosis" }), el("th", { text: "What it means" }),
            el("th", { class: "num", text: "Devices" }))),
          el("tbody", {}, diagnoses.map(([code, count]) =>
            el("tr", {},
              el("td", {}, el("a", { href: `#/devices?diagnosis=${code}` }, badge(catalogue[code] || { code, severity: "info" }))),
              el("td", { text: catalogue[code] ? catalogue[code].summary : "" }),
              el("td", { class: "num", "data-diagnosis-count": code, text: count }))))));
  }

  // "As of <time>", and a poll (bounded) while a pass is making newer numbers.
  function overviewFreshness(data) {
    const waiting = data.refreshing || !data.asOf;
    let note = "";
    if (!waiting) {
      state.overviewWaitUntil = null;
    } else {
      if (state.overviewWaitUntil === null) state.overviewWaitUntil = Date.now() + OVERVIEW_WAIT_MS;
      if (Date.now() < state.overviewWaitUntil) {
        state.timer = setTimeout(route, OVERVIEW_REFRESH_MS);
        note = data.asOf ? " · refreshing…" : "";
      } else {
        note = " · still refreshing: reload the page for newer numbers";
      }
    }
    const text = data.asOf
      ? `As of ${when(data.asOf)} (${ago(data.asOf)})${note}`
      : `Counting the fleet for the first time…${note}`;
    return el("p", { class: "muted", "data-as-of": data.asOf || "", "data-refreshing": data.refreshing ? "yes" : "no", text });
  }

  function installChart(days) {
    const width = 900, height = 160, pad = 24;
    const max = Math.max(1, ...days.map((d) => d.count));
    const step = (width - pad) / days.length;
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 20}`, width: "100%", role: "img",
      "aria-label": "Installed devices per day" });
    chart.append(svg("line", { x1: pad, y1: height, x2: width, y2: height }));
    chart.append(svg("text", { x: 0, y: 10, text: String(max) }));
    days.forEach((day, index) => {
      const barHeight = Math.round((day.count / max) * (height - 16));
      const bar = svg("rect", { class: "bar", x: pad + index * step + 2, y: height - barHeight,
        width: Math.max(2, step - 4), height: barHeight });
      bar.append(svg("title", { text: `${day.day}: ${day.count}` }));
      chart.append(bar);
      if (index % 5 === 0 || index === days.length - 1) {
        chart.append(svg("text", { x: pad + index * step, y: height + 14, text: day.day.slice(5) }));
      }
    });
    return el("div", { class: "chart" }, chart);
  }

  function select(name, label, options, current) {
    return el("label", {}, label,
      el("select", { name, "data-filter": name },
        options.map(([value, text]) => el("option", { value, selected: value === (current || ""), text }))));
  }

  async function devices(params) {
    const query = new URLSearchParams({ pageSize: String(PAGE_SIZE) });
    for (const name of ["stage", "diagnosis", "next"]) if (params.get(name)) query.set(name, params.get(name));
    if (AGE_MS[params.get("age")]) {
      query.set("lastReportAtBefore", new Date(Date.now() - AGE_MS[params.get("age")]).toISOString());
    }
    const [page, spec] = await Promise.all([api(`/devices?${query}`), diagnosisCodes()]);
    const form = el("form", { class: "filters", on: { change: (event) => {
      const next = new URLSearchParams();
      for (const field of event.currentTarget.querySelectorAll("select")) if (field.value) next.set(field.name, field.value);
      location.hash = `#/devices?${next}`;
    } } },
      select("stage", "Stage", [["", "Any stage"], ...["bundle-received", "installing", "installed", "failed"].map((s) => [s, s])], params.get("stage")),
      select("diagnosis", "Diagnosis", [["", "Any diagnosis"], ...spec.map((c) => [c, c])], params.get("diagnosis")),
      select("age", "Last report", AGES, params.get("age")));
    const rows = page.devices.map((device) =>
      el("tr", { "data-device": device.deviceId },
        el("td", {}, el("a", { href: `#/devices/${device.deviceId}`, text: device.hostname || device.deviceId })),
        el("td", { class: "mono", text: device.deviceId }),
        el("td", { text: device.stage }),
        el("td", {}, badge(device.diagnosis), " ", device.diagnosis.summary),
        el("td", { class: "age", title: when(device.lastReportAt), text: ago(device.lastReportAt) })));
    const nextParams = new URLSearchParams(params);
    if (page.next) nextParams.set("next", page.next);
    return el("section", { "data-view": "devices" },
      el("h1", { text: "Devices" }),
      form,
      el("table", {},
        el("thead", {}, el("tr", {}, ["Device", "Device id", "Stage", "Diagnosis", "Last report"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No device matches." })))),
      el("div", { class: "pager" },
        params.get("next") ? el("a", { href: "#/devices?" + withoutNext(params), text: "First page" }) : null,
        page.next ? el("a", { href: `#/devices?${nextParams}`, "data-next": "", text: "Next page" }) : null,
        el("span", { "data-shown": page.devices.length, text: `${page.devices.length} shown` })));
  }

  function withoutNext(params) {
    const copy = new URLSearchParams(params);
    copy.delete("next");
    return copy.toString();
  }

  // The diagnosis codes and what each means, from the API's own description.
  let catalogueCache = null;
  async function diagnosisCatalogue() {
    if (!catalogueCache) {
      const doc = await fetch(`${API}/openapi.json`).then((r) => r.json());
      catalogueCache = doc.components.schemas.Diagnosis["x-catalogue"];
    }
    return catalogueCache;
  }
  async function diagnosisCodes() {
    return Object.keys(await diagnosisCatalogue());
  }

  async function device(id) {
    const d = await api(`/devices/${encodeURIComponent(id)}`);
    const facts = [
      ["Device id", d.deviceId], ["Stage", d.stage], ["Last report", `${when(d.lastReportAt)} (${ago(d.lastReportAt)})`],
      ["Reports", d.reportCount], ["ccmsetup exit code", d.ccmsetupExitCode ?? "—"],
      ["Install error", d.installErrorCode == null ? "—" : hex(d.installErrorCode)],
      ["Entra joined", d.azureAdJoined ? "yes" : "no"], ["Domain joined", d.domainJoined ? "yes" : "no"],
      ["Client version", d.clientVersion || "—"], ["Site code", d.siteCode || "—"],
    ];
    const raw = Object.entries(d.dsregcmd || {}).map(([k, v]) => `${k.padStart(28)} : ${v}`).join("\n");
    return el("section", { "data-view": "device" },
      el("h1", { text: d.hostname || d.deviceId }),
      el("div", { class: `panel diagnosis sev-${d.diagnosis.severity}-box`, "data-diagnosis-box": d.diagnosis.code },
        el("p", { class: "summary" }, badge(d.diagnosis), " ", d.diagnosis.summary),
        el("p", { class: "advice", "data-advice": "", text: d.diagnosis.advice })),
      el("h2", { text: "Latest state" }),
      el("div", { class: "panel" }, el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]))),
      el("h2", { text: "Timeline" }),
      el("table", {},
        el("thead", {}, el("tr", {}, ["When", "What", "Details", "Authenticated by"].map((h) => el("th", { text: h })))),
        el("tbody", {}, d.timeline.map((event) => el("tr", { "data-kind": event.kind },
          el("td", { text: when(event.at) }),
          el("td", { text: event.kind === "bundle" ? "bundle issued" : `report: ${event.stage}` }),
          el("td", { class: "mono", text: event.kind === "bundle"
            ? `jti ${event.jti}${event.profile ? `, profile ${event.profile}` : ""}, expires ${when(event.expires)}`
            : `ccmsetup ${event.ccmsetupExitCode ?? "—"}${event.installErrorCode == null ? "" : `, error ${hex(event.installErrorCode)}`}` }),
          el("td", { text: authText(event) }))))),
      el("h2", { text: "dsregcmd /status" }),
      raw ? el("pre", { class: "raw mono", "data-dsregcmd": "", text: raw }) : el("p", { class: "muted", text: "The device sent no dsregcmd output." }));
  }

  function hex(code) {
    return "0x" + (code >>> 0).toString(16).toUpperCase().padStart(8, "0");
  }
  const AUTH = { device: "device proof", user: "user token", "device+user": "device proof + user token" };
  function authText(event) {
    if (!event.auth) return "not recorded";
    const details = [];
    if (event.certThumbprint) details.push(`certificate ${event.certThumbprint}`);
    if (event.userObjectId) details.push(`user ${event.userObjectId}`);
    const label = AUTH[event.auth] || event.auth;
    return details.length ? `${label} (${details.join(", ")})` : label;
  }

  async function runs() {
    const page = await api(`/discovery/runs?pageSize=${PAGE_SIZE}`);
    const live = page.runs.some((run) => run.status === "running");
    const rows = page.runs.map((run) => {
      const p = run.progress || {};
      const bar = p.percent == null
        ? el("span", { class: "muted", text: run.status === "running" ? "estimating…" : "" })
        : el("progress", { max: 100, value: p.percent, "data-percent": p.percent, text: `${p.percent}%` });
      const left = p.secondsLeft ? ` · about ${Math.ceil(p.secondsLeft / 60)} min left` : "";
      return el("tr", { "data-run": run.runId, "data-status": run.status },
        el("td", { text: when(run.startedAt) }),
        el("td", { text: run.resource || "users" }),
        el("td", { text: `${run.mode} (${run.trigger})` }),
        el("td", { text: run.status }),
        el("td", { class: "num", text: p.pages ?? run.pages ?? 0 }),
        el("td", { class: "num", "data-users": "", text: p.users ?? run.upserts ?? 0 }),
        el("td", {}, bar, p.percent == null ? "" : ` ${p.percent}%`, left),
        el("td", { text: run.error || run.fallbackReason || "" }));
    });
    if (live) state.timer = setTimeout(route, RUN_REFRESH_MS);
    return el("section", { "data-view": "runs" },
      el("h1", { text: "Discovery runs" }),
      live ? el("p", { class: "muted", text: "A run is in progress: this page refreshes every 2 seconds." }) : null,
      el("table", {},
        el("thead", {}, el("tr", {}, ["Started", "Resource", "Mode", "Status", "Pages", "Items", "Progress", "Note"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted", text: "No run yet." })))));
  }

  // Discovered groups (DISCOVERY_GROUPS) and the app's Graph change-notification subscriptions,
  // which health's admin details carry (an expiry within 24 hours is unhealthy).
  async function groups(params) {
    const query = new URLSearchParams({ pageSize: String(PAGE_SIZE) });
    if (params.get("next")) query.set("next", params.get("next"));
    const [page, health] = await Promise.all([api(`/groups?${query}`), api("/health")]);
    const subscriptions = health.subscriptions || [];
    const subscriptionRows = subscriptions.map((s) =>
      el("tr", { "data-subscription": s.resource, "data-healthy": s.healthy ? "yes" : "no" },
        el("td", { text: s.resource }),
        el("td", { text: s.subscriptionId ? when(s.expirationDateTime) : "not created yet" }),
        el("td", { text: when(s.lastRenewalAt) }),
        el("td", { text: s.lastLifecycleEvent || "—" }),
        el("td", { class: s.healthy ? "" : "error-text", text: s.healthy ? "ok" : (s.lastError || "expires within 24 hours") })));
    const groupRows = page.groups.map((g) =>
      el("tr", { "data-group": g.groupId },
        el("td", { text: g.displayName || "—" }),
        el("td", { class: "mono", text: g.groupId }),
        el("td", { text: g.isDeleted ? "deleted in Entra ID" : "present" }),
        el("td", { text: when(g.lastDiscoveredAt) })));
    const nextParams = new URLSearchParams(params);
    if (page.next) nextParams.set("next", page.next);
    return el("section", { "data-view": "groups" },
      el("h1", { text: "Groups and change notifications" }),
      el("h2", { text: "Graph subscriptions" }),
      subscriptionRows.length
        ? el("table", {},
          el("thead", {}, el("tr", {}, ["Resource", "Expires", "Last renewal", "Last lifecycle event", "State"].map((h) => el("th", { text: h })))),
          el("tbody", {}, subscriptionRows))
        : el("p", { class: "muted", "data-no-subscriptions": "", text: "Graph change notifications are off (GRAPH_NOTIFICATION_URL is unset): discovery runs on its timers." }),
      el("h2", { text: "Discovered groups" }),
      el("table", {},
        el("thead", {}, el("tr", {}, ["Name", "Object id", "In Entra ID", "Last discovered"].map((h) => el("th", { text: h })))),
        el("tbody", {}, groupRows.length ? groupRows : el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No group discovered (DISCOVERY_GROUPS is none, or no run yet)." })))),
      el("div", { class: "pager" },
        params.get("next") ? el("a", { href: "#/groups", text: "First page" }) : null,
        page.next ? el("a", { href: `#/groups?${nextParams}`, "data-next": "", text: "Next page" }) : null));
  }

  // Install profiles (lower priority wins) and the resolver: which profile a device or user
  // gets, and through which groups. Changing profiles stays with the API (PUT/DELETE).
  const OVERRIDES = ["ccmHostname", "siteCode", "managementPoint", "source", "noCrlCheck"];
  function overridesText(profile) {
    const parts = OVERRIDES.filter((k) => profile[k] !== undefined && profile[k] !== null).map((k) => `${k}=${profile[k]}`);
    for (const [k, v] of Object.entries(profile.properties || {})) parts.push(`${k}=${v}`);
    return parts.join(" ") || "—";
  }

  async function profiles(params) {
    const query = new URLSearchParams({ pageSize: String(PAGE_SIZE) });
    if (params.get("next")) query.set("next", params.get("next"));
    const page = await api(`/profiles?${query}`);
    const rows = page.profiles.map((p) =>
      el("tr", { "data-profile": p.name },
        el("td", { text: p.name }),
        el("td", { class: "num", text: p.priority }),
        el("td", { class: "mono", text: p.groupId }),
        el("td", { class: "mono", text: overridesText(p) }),
        el("td", { text: when(p.updatedAt) })));
    const form = el("form", { class: "filters", "data-resolve-form": "", on: { submit: (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      for (const field of event.currentTarget.querySelectorAll("input")) if (field.value.trim()) next.set(field.name, field.value.trim());
      location.hash = `#/profiles?${next}`;
    } } },
      el("label", {}, "Device id ", el("input", { name: "deviceId", value: params.get("deviceId") || "", size: 38 })),
      el("label", {}, "User object id ", el("input", { name: "userId", value: params.get("userId") || "", size: 38 })),
      el("button", { type: "submit", text: "Resolve" }));
    let answer = null;
    if (params.get("deviceId") || params.get("userId")) {
      const ask = new URLSearchParams();
      for (const name of ["deviceId", "userId"]) if (params.get(name)) ask.set(name, params.get(name));
      const resolved = await api(`/profiles/resolve?${ask}`);
      answer = el("div", { class: "panel", "data-resolved": resolved.profile },
        el("p", {}, "Applies: ", el("strong", { text: resolved.profile }),
          resolved.matchedBy ? ` (matched by the ${resolved.matchedBy})` : " (no profile's group holds them: the settings apply)",
          resolved.upToDate ? "" : " — a rebuild after the last change is still running"),
        resolved.candidates.map((c) => el("p", { class: "mono", text:
          `${c.profile} (priority ${c.priority}): ${c.memberType} in ${c.groupPath.map((g) => g.displayName || g.groupId).join(" > ")}` })));
    }
    const nextParams = new URLSearchParams(params);
    if (page.next) nextParams.set("next", page.next);
    return el("section", { "data-view": "profiles" },
      el("h1", { text: "Install profiles" }),
      el("p", { class: "muted", text: "A bundle applies the profile with the lowest priority whose group holds the device or its user, directly or through nested groups; otherwise the app settings." }),
      el("table", {},
        el("thead", {}, el("tr", {}, ["Name", "Priority", "Group", "Overrides", "Updated"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No profile: every device gets the app settings (PUT /api/profiles/{name} adds one)." })))),
      el("div", { class: "pager" },
        page.next ? el("a", { href: `#/profiles?${nextParams}`, "data-next": "", text: "Next page" }) : null),
      el("h2", { text: "Which profile applies?" }),
      form,
      answer);
  }

  // ---- routing ----------------------------------------------------------------------------
  async function route() {
    if (state.timer) clearTimeout(state.timer);
    const [path, query] = (location.hash.replace(/^#/, "") || "/overview").split("?");
    const params = new URLSearchParams(query || "");
    const parts = path.split("/").filter(Boolean);
    if (parts[0] && parts[0] !== "overview") state.overviewWaitUntil = null;
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", link.dataset.nav === parts[0]);
    }
    try {
      let view;
      if (parts[0] === "devices" && parts[1]) view = await device(parts[1]);
      else if (parts[0] === "devices") view = await devices(params);
      else if (parts[0] === "runs") view = await runs();
      else if (parts[0] === "groups") view = await groups(params);
      else if (parts[0] === "profiles") view = await profiles(params);
      else view = await overview();
      showError("");
      show(view);
      document.body.dataset.rendered = location.hash || "#/overview";
    } catch (error) {
      if (error instanceof SignInNeeded) signedOut(error.message);
      else showError(error.message);
    }
  }

  async function start() {
    $("sign-in").addEventListener("click", () => signIn().catch((e) => showError(e.message)));
    $("sign-out").addEventListener("click", signOut);
    window.addEventListener("hashchange", route);
    state.config = await fetch(`${API}/console/config.json`).then((r) => r.json());
    if (state.config.signIn === "msal") {
      await startMsal();
    } else {
      $("sign-in-text").textContent = "Development: sign in as the demo admin (a token from the demo Entra ID issuer).";
      state.token = sessionStorage.getItem(DEMO_TOKEN_KEY);
    }
    if (state.account || state.token) signedIn();
    else signedOut();
  }

  start().catch((error) => showError(`The console could not start: ${error.message}`));
})();
