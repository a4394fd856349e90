// The overview: every cluster with its buckets and backends, HAProxy-style, refreshed every two
// seconds from GET /api/ (and the state-change times from GET /history). The tables are built
// once and then updated in place, so buttons stay put while the numbers change.
"use strict";

(() => {
  const { el, fmt, ago, request, getJSON, status } = director;
  const REFRESH_MS = 2000;
  const enc = encodeURIComponent;

  let signature = null; // which clusters, buckets and backends the DOM was built for
  let cells = new Map(); // key -> {cell name -> element}
  let historySeq = null;
  let states = new Map(); // "cluster/backend" -> {state, since}
  let timer = null;

  // Exposed for tests and curious users: the last index and how often it was drawn.
  const state = (window.directorOverview = { index: null, refreshes: 0, error: null });

  function buckets(node, depth = 0, out = []) {
    out.push({ node, depth });
    for (const child of node.children || []) buckets(child, depth + 1, out);
    return out;
  }

  function health(member) {
    const s = (member.health && member.health.state || "").toLowerCase();
    if (s === "online") return ["online", "ok", "●"];
    if (s === "offline") return ["offline", "bad", "✕"];
    return ["unchecked", "warn", "?"];
  }

  function admin(member) {
    if (member.role === "terminate") return ["draining", "warn"];
    if (member["admin-state"] === "drain") return ["soft drain", "warn"];
    if (member["admin-state"] === "maint" || !member.enabled) return ["disabled", "off"];
    return ["enabled", "ok"];
  }

  function address(m) {
    if (m.path) return "unix:" + m.path;
    if (m.cluster) return "cluster:" + m.cluster;
    if (m.hostname) return (m.hostname.includes(":") ? "[" + m.hostname + "]" : m.hostname) + ":" + m.port;
    return m.url || "";
  }

  function meter(current, capacity) {
    const bar = el("i");
    const text = el("span");
    const box = el("div", { class: "meter" }, el("div", { class: "bar", "aria-hidden": "true" }, bar), text);
    box.update = (cur, cap) => {
      const pct = cap > 0 ? Math.min(100, (100 * cur) / cap) : 0;
      bar.style.width = pct + "%";
      bar.classList.toggle("full", cap > 0 && cur >= cap);
      text.textContent = cap > 0 ? `${fmt(cur)} / ${fmt(cap)}` : `${fmt(cur)} / no limit`;
    };
    box.update(current, capacity);
    return box;
  }

  function badge() {
    const b = el("span", { class: "state" });
    b.update = (text, cls) => {
      b.textContent = text;
      b.className = "state " + cls;
    };
    return b;
  }

  async function act(button, method, url, done) {
    const row = button.closest("tr, header");
    const buttons = row ? row.querySelectorAll("button") : [button];
    buttons.forEach((b) => (b.disabled = true));
    try {
      const res = await request(method, url);
      if (res.ok) status(done);
      else status(await director.errorText(res), true);
    } catch (e) {
      status(String(e.message || e), true);
    }
    await refresh();
  }

  function build(index) {
    const root = document.getElementById("clusters");
    root.replaceChildren();
    cells = new Map();
    const names = Object.keys(index).sort();
    if (!names.length) {
      root.append(el("p", { class: "empty" }, "No clusters are configured."));
      return;
    }
    for (const name of names) {
      const c = index[name];
      const k = {};
      cells.set("c:" + name, k);
      k.state = badge();
      k.kind = el("span");
      k.scheduler = el("b");
      k.load = meter(0, 0);
      k.queued = el("b");
      k.dropped = el("b");
      k.total = el("b");
      k.online = el("b");
      k.disable = el("button", {
        type: "button", "data-action": "disable-cluster", "data-cluster": name,
        onclick: (ev) => act(ev.target, "LOCK", `/api/${enc(name)}`, `Cluster ${name} disabled: it answers 503.`),
      }, "Disable cluster");
      k.enable = el("button", {
        type: "button", "data-action": "enable-cluster", "data-cluster": name,
        onclick: (ev) => act(ev.target, "UNLOCK", `/api/${enc(name)}`, `Cluster ${name} enabled.`),
      }, "Enable cluster");
      const section = el("section", { class: "cluster", "data-cluster": name, "aria-labelledby": "cl-" + name },
        el("header", null,
          el("h2", { id: "cl-" + name }, name),
          k.state,
          el("div", { class: "facts" },
            k.kind,
            el("span", null, "scheduler ", k.scheduler),
            el("span", null, "backends online ", k.online),
            el("span", null, "queued ", k.queued),
            el("span", null, "dropped ", k.dropped),
            el("span", null, "requests ", k.total),
            el("span", null, "load ", k.load)),
          el("span", { class: "actions" }, k.enable, " ", k.disable)));

      const tree = buckets(c.shaper || { name: "root", children: [] });
      if (tree.length > 1) {
        const body = el("tbody");
        for (const { node, depth } of tree) {
          const b = {};
          cells.set(`q:${name}/${node.name}`, b);
          b.share = el("td", { class: "num" });
          b.tokens = el("td", { class: "num" });
          b.load = meter(0, 0);
          b.max = el("td", { class: "num hide-narrow" });
          b.total = el("td", { class: "num" });
          b.queued = el("td", { class: "num" });
          b.dropped = el("td", { class: "num" });
          body.append(el("tr", { "data-bucket": node.name },
            el("td", { style: `padding-left:${10 + depth * 16}px` }, node.name),
            b.share, b.tokens, el("td", null, b.load), b.max, b.total, b.queued, b.dropped));
        }
        section.append(el("h3", null, "Buckets"), el("div", { class: "table-wrap" }, el("table", null,
          el("thead", null, el("tr", null,
            el("th", { scope: "col" }, "Bucket"),
            el("th", { scope: "col", class: "num" }, "Rate / ceil"),
            el("th", { scope: "col", class: "num" }, "Tokens"),
            el("th", { scope: "col" }, "Load"),
            el("th", { scope: "col", class: "num hide-narrow" }, "Max"),
            el("th", { scope: "col", class: "num" }, "Total"),
            el("th", { scope: "col", class: "num" }, "Queued (max)"),
            el("th", { scope: "col", class: "num" }, "Dropped"))),
          body)));
      }

      const body = el("tbody");
      for (const m of c.members || []) {
        const b = {};
        cells.set(`b:${name}/${m.name}`, b);
        b.row = el("tr", { "data-backend": m.name, "data-cluster": name });
        b.role = el("td", { "data-label": "Role" });
        b.health = badge();
        b.admin = badge();
        b.load = meter(0, 0);
        b.max = el("td", { class: "num hide-narrow" });
        b.total = el("td", { class: "num", "data-label": "Total" });
        b.weight = el("td", { class: "num hide-narrow" });
        b.change = el("td", { "data-label": "Last change" });
        const url = `/api/${enc(name)}/backends/${enc(m.name)}`;
        b.enable = el("button", {
          type: "button", "data-action": "enable", "data-cluster": name, "data-backend": m.name,
          // state=ready: enabled, and out of a soft drain too.
          onclick: (ev) => act(ev.target, "POST", url + "?state=ready", `Backend ${m.name} of ${name} enabled.`),
        }, "Enable");
        b.disable = el("button", {
          type: "button", "data-action": "disable", "data-cluster": name, "data-backend": m.name,
          onclick: (ev) => act(ev.target, "LOCK", url, `Backend ${m.name} of ${name} disabled: it gets no new requests.`),
        }, "Disable");
        b.drain = el("button", {
          type: "button", "data-action": "drain", "data-cluster": name, "data-backend": m.name,
          onclick: (ev) => act(ev.target, "POST", url + "?state=drain",
            `Backend ${m.name} of ${name} drains: it stays a member but gets no new balanced requests.`),
        }, "Drain");
        b.remove = el("button", {
          type: "button", class: "danger", "data-action": "remove", "data-cluster": name, "data-backend": m.name,
          onclick: (ev) => {
            if (confirm(`Remove ${m.name}? It takes no new requests and leaves cluster ${name} once idle.`)) {
              act(ev.target, "DELETE", url, `Backend ${m.name} of ${name} drains and will be removed when idle.`);
            }
          },
        }, "Remove");
        b.row.append(
          el("th", { scope: "row" }, m.name, el("span", { class: "addr" }, address(m))),
          b.role, el("td", { "data-label": "Health" }, b.health), el("td", { "data-label": "Admin" }, b.admin),
          el("td", { "data-label": "Load" }, b.load),
          b.max, b.total, b.weight, b.change,
          el("td", { class: "actions" }, b.enable, b.disable, b.drain, b.remove));
        body.append(b.row);
      }
      section.append(el("h3", null, "Backends"), el("div", { class: "table-wrap" }, el("table", { class: "backends" },
        el("thead", null, el("tr", null,
          el("th", { scope: "col" }, "Backend"),
          el("th", { scope: "col" }, "Role"),
          el("th", { scope: "col" }, "Health"),
          el("th", { scope: "col" }, "Admin"),
          el("th", { scope: "col" }, "Load / capacity"),
          el("th", { scope: "col", class: "num hide-narrow" }, "Max"),
          el("th", { scope: "col", class: "num" }, "Total"),
          el("th", { scope: "col", class: "num hide-narrow" }, "Weight"),
          el("th", { scope: "col" }, "Last change"),
          el("th", { scope: "col" }, el("span", { class: "skip" }, "Actions")))),
        body)));
      root.append(section);
    }
  }

  function update(index) {
    for (const [name, c] of Object.entries(index)) {
      const k = cells.get("c:" + name);
      const members = c.members || [];
      k.state.update(c.enabled ? "enabled" : "disabled", c.enabled ? "ok" : "off");
      k.kind.textContent = c.mutable || c.dynamic ? "dynamic" : "static";
      k.scheduler.textContent = c.scheduler;
      const online = members.filter((m) => health(m)[0] !== "offline" && admin(m)[0] === "enabled").length;
      k.online.textContent = `${online} / ${members.length}`;
      const load = c.stats.load;
      k.load.update(load.current, c.shaper ? c.shaper["token-ceil"] : 0);
      k.queued.textContent = `${fmt(c.stats.queued.current)} (${fmt(c.stats.queued.max)})`;
      k.dropped.textContent = fmt(c.stats.dropped);
      k.total.textContent = fmt(load.total);
      k.enable.disabled = c.enabled;
      k.disable.disabled = !c.enabled;

      for (const { node } of buckets(c.shaper || { name: "root", children: [] })) {
        const b = cells.get(`q:${name}/${node.name}`);
        if (!b) continue;
        const s = node.stats;
        b.share.textContent = `${fmt(node.rate * 100)}% / ${fmt(node.ceil * 100)}%`;
        b.tokens.textContent = `${node["token-rate"]} / ${node["token-ceil"]}`;
        b.load.update(s.load.current, node["token-ceil"]);
        b.max.textContent = fmt(s.load.max);
        b.total.textContent = fmt(s.load.total);
        b.queued.textContent = `${fmt(s.queued.current)} (${fmt(s.queued.max)})`;
        b.dropped.textContent = fmt(s.dropped);
      }

      for (const m of members) {
        const b = cells.get(`b:${name}/${m.name}`);
        const seen = states.get(`${name}/${m.name}`);
        // The operator state (HAProxy's ready / drain / maint) comes with the history.
        if (seen && seen.admin) m["admin-state"] = seen.admin;
        const [h, hc, sym] = health(m);
        const [a, ac] = admin(m);
        b.role.textContent = m.role;
        b.health.update(`${sym} ${h}`, hc);
        b.admin.update(a, ac);
        b.row.classList.toggle("is-off", h === "offline" || a !== "enabled");
        b.load.update(m.stats.load.current, m.capacity);
        b.max.textContent = fmt(m.stats.load.max);
        b.total.textContent = fmt(m.stats.load.total);
        b.weight.textContent = m.weight === undefined ? "–" : fmt(m.weight);
        if (seen && seen.since) {
          b.change.textContent = ago(seen.since);
          b.change.title = `${h}, ${a} since ${new Date(seen.since).toLocaleString()}`;
        } else {
          b.change.textContent = "–";
          b.change.title = "";
        }
        const leaving = m.role === "terminate";
        const drained = m["admin-state"] === "drain";
        b.enable.disabled = (m.enabled && !drained) || leaving;
        b.disable.disabled = !m.enabled || leaving;
        b.drain.disabled = drained || !m.enabled || leaving;
        b.remove.disabled = leaving || !(c.mutable || c.dynamic);
        b.remove.title = b.remove.disabled && !leaving
          ? "static clusters change through the config file" : "";
      }
    }
  }

  function shape(index) {
    return Object.keys(index).sort().map((n) => {
      const c = index[n];
      return [n, buckets(c.shaper || { name: "root", children: [] }).map((b) => b.node.name).join(","),
        (c.members || []).map((m) => m.name).join(",")].join(":");
    }).join("|");
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const [index, history] = await Promise.all([
        getJSON("/api/"),
        getJSON("/history" + (historySeq === null ? "?since=" + Number.MAX_SAFE_INTEGER : `?since=${historySeq}`)),
      ]);
      historySeq = history.last;
      states = new Map((history.backends || []).map((b) => [`${b.cluster}/${b.name}`, b]));
      const sig = shape(index);
      if (sig !== signature) {
        build(index);
        signature = sig;
      }
      update(index);
      state.index = index;
      state.refreshes++;
      state.error = null;
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
      if (document.getElementById("status").classList.contains("error") && state.lastError) {
        status("");
      }
      state.lastError = false;
    } catch (e) {
      state.error = String(e.message || e);
      state.lastError = true;
      status(state.error, true);
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  director.refresh = refresh;
  document.addEventListener("DOMContentLoaded", refresh);
})();
