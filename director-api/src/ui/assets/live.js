// The live page: per cluster, charts of requests/s, responses by class, latency, utilisation and
// queue length, for the cluster, its buckets and its backends. It loads the server's history
// (GET /history: up to 15 minutes) and then polls every second for the samples after the last
// one it has (GET /history?since=<seq>).
"use strict";

(() => {
  const { el, getJSON, status, fmt } = director;
  const POLL_MS = 1000;
  const CLASSES = ["2xx", "3xx", "4xx", "5xx", "1xx", "other"];

  // The history, columnar as the server sends it: times, and per series one array per measure.
  const store = { time: [], series: new Map(), last: null, capacity: 900 };
  let charts = []; // {cluster, title, chart, series(store) -> [{label, values}]}
  let signature = null;
  let timer = null;

  // Exposed for tests: how much history the page holds and what each chart draws.
  const state = (window.directorLive = { samples: 0, last: null, charts: [], polls: 0, error: null });

  const key = (s) => `${s.cluster}\u0000${s.kind}\u0000${s.name}`;
  const MEASURES = ["rps", "load", "capacity", "utilisation", "queued", "latency-ms", "latency-p95-ms"];

  function column(s, m) {
    return m.startsWith("responses.") ? s.responses[m.slice(10)] : s[m];
  }

  function merge(doc) {
    store.capacity = doc.capacity || store.capacity;
    // A gap (the page slept, the server restarted): start over from what the server has.
    if (store.last !== null && (doc.first !== null && doc.first > store.last + 1 || doc.last < store.last)) {
      store.time = [];
      store.series = new Map();
    }
    const before = store.time.length;
    const n = doc.time.length;
    store.time.push(...doc.time);
    const seen = new Set();
    for (const s of doc.series) {
      const k = key(s);
      seen.add(k);
      let mine = store.series.get(k);
      if (!mine) {
        mine = { cluster: s.cluster, kind: s.kind, name: s.name, responses: {} };
        for (const m of MEASURES) mine[m] = new Array(before).fill(null);
        for (const c of CLASSES) mine.responses[c] = new Array(before).fill(null);
        store.series.set(k, mine);
      }
      for (const m of MEASURES) mine[m].push(...(s[m] || new Array(n).fill(null)));
      for (const c of CLASSES) mine.responses[c].push(...((s.responses || {})[c] || new Array(n).fill(null)));
    }
    for (const [k, mine] of store.series) {
      if (seen.has(k)) continue;
      const pad = new Array(n).fill(null);
      for (const m of MEASURES) mine[m].push(...pad);
      for (const c of CLASSES) mine.responses[c].push(...pad);
    }
    const extra = store.time.length - store.capacity;
    if (extra > 0) {
      store.time.splice(0, extra);
      for (const [k, mine] of store.series) {
        for (const m of MEASURES) mine[m].splice(0, extra);
        for (const c of CLASSES) mine.responses[c].splice(0, extra);
        if (!mine.rps.some((v) => v !== null) && !mine.load.some((v) => v !== null)) store.series.delete(k);
      }
    }
    store.last = doc.last;
  }

  function seriesOf(cluster, kinds) {
    return [...store.series.values()].filter((s) => s.cluster === cluster && kinds.includes(s.kind));
  }

  function label(s) {
    return s.kind === "cluster" ? "cluster" : s.kind === "bucket" ? `bucket ${s.name}` : s.name;
  }

  const percent = (vals) => vals.map((v) => (v === null ? null : v * 100));

  // The charts of one cluster: a title and how to get its lines from the store.
  function definitions(cluster) {
    return [
      {
        title: "Requests/s", unit: "",
        lines: () => seriesOf(cluster, ["cluster", "backend"]).map((s) => ({
          label: label(s), values: s.rps, width: s.kind === "cluster" ? 2.5 : 1.5 })),
      },
      {
        title: "Responses/s by class", unit: "", stacked: true,
        lines: () => {
          const c = seriesOf(cluster, ["cluster"])[0];
          if (!c) return [];
          return CLASSES.filter((k) => k !== "1xx" && k !== "other" || c.responses[k].some((v) => v))
            .map((k) => ({ label: k, values: c.responses[k] }));
        },
      },
      {
        title: "Latency (ms)", unit: "",
        lines: () => {
          const out = [];
          for (const s of seriesOf(cluster, ["cluster", "backend"])) {
            out.push({ label: s.kind === "cluster" ? "cluster mean" : s.name, values: s["latency-ms"],
              width: s.kind === "cluster" ? 2.5 : 1.5 });
            if (s.kind === "cluster") out.push({ label: "cluster p95", values: s["latency-p95-ms"], width: 2.5 });
          }
          return out;
        },
      },
      {
        title: "Utilisation (%)", unit: "%", max: 100,
        lines: () => seriesOf(cluster, ["cluster", "bucket", "backend"]).map((s) => ({
          label: label(s), values: percent(s.utilisation), width: s.kind === "cluster" ? 2.5 : 1.5 })),
      },
      {
        title: "Queue length", unit: "",
        lines: () => seriesOf(cluster, ["cluster", "bucket"]).map((s) => ({
          label: label(s), values: s.queued, width: s.kind === "cluster" ? 2.5 : 1.5 })),
      },
    ];
  }

  function clusters() {
    return [...new Set([...store.series.values()].map((s) => s.cluster))].sort();
  }

  function build() {
    const root = document.getElementById("live");
    root.replaceChildren();
    charts = [];
    const only = document.getElementById("cluster").value;
    const names = clusters().filter((c) => !only || c === only);
    if (!names.length) {
      root.append(el("p", { class: "empty" }, store.time.length ? "No clusters." : "Waiting for the first samples…"));
      return;
    }
    for (const name of names) {
      const grid = el("div", { class: "charts" });
      for (const def of definitions(name)) {
        const figure = el("figure", { class: "chart", "data-cluster": name, "data-chart": def.title },
          el("figcaption", null, def.title, el("span", { class: "now" })),
          el("canvas", { role: "img", "aria-label": `${def.title} of cluster ${name}` }),
          el("div", { class: "legend" }));
        grid.append(figure);
        charts.push({ cluster: name, def, chart: new director.Chart(figure, def), figure });
      }
      root.append(el("section", { class: "cluster", "data-cluster": name },
        el("header", null, el("h2", null, name)), grid));
    }
  }

  function syncSelect() {
    const select = document.getElementById("cluster");
    const have = [...select.options].map((o) => o.value).filter(Boolean);
    const want = clusters();
    if (have.join("\u0000") === want.join("\u0000")) return;
    const value = select.value;
    select.replaceChildren(el("option", { value: "" }, "all"), ...want.map((c) => el("option", { value: c }, c)));
    select.value = want.includes(value) ? value : "";
  }

  function draw() {
    syncSelect();
    const sig = clusters().join("\u0000") + "|" + document.getElementById("cluster").value;
    if (sig !== signature) {
      build();
      signature = sig;
    }
    const to = store.time.length ? store.time[store.time.length - 1] : Date.now();
    const chosen = document.getElementById("window").value;
    // "auto": the history there is, from one minute up to all of it.
    const span = store.time.length ? (to - store.time[0]) / 1000 : 0;
    const windowS = chosen === "auto" ? Math.min(900, Math.max(60, Math.ceil(span / 60) * 60)) : Number(chosen);
    const from = to - windowS * 1000;
    // Only the samples inside the window (plus one before, so lines reach the edge).
    let start = store.time.findIndex((t) => t >= from);
    if (start < 0) start = store.time.length;
    start = Math.max(0, start - 1);
    const times = store.time.slice(start);
    for (const c of charts) {
      const lines = c.def.lines().map((l) => Object.assign({}, l, { values: l.values.slice(start) }));
      c.chart.set(times, lines, from, to);
      const first = lines[0];
      const now = first ? [...first.values].reverse().find((v) => v !== null) : undefined;
      c.figure.querySelector(".now").textContent = first && now !== undefined ? `${first.label} ${fmt(now, 1)}${c.def.unit}` : "";
    }
    state.samples = store.time.length;
    state.last = store.last;
    state.charts = charts.map((c) => ({
      cluster: c.cluster,
      title: c.def.title,
      points: c.chart.points(),
      max: c.chart.max(),
      series: c.chart.series.map((s) => s.label),
    }));
  }

  async function poll() {
    clearTimeout(timer);
    if (!document.getElementById("pause").checked) {
      try {
        const doc = await getJSON(store.last === null ? "/history" : `/history?since=${store.last}`);
        merge(doc);
        draw();
        state.polls++;
        if (state.error) status("");
        state.error = null;
      } catch (e) {
        state.error = String(e.message || e);
        status(state.error, true);
      }
    }
    timer = setTimeout(poll, POLL_MS);
  }

  director.refresh = poll;
  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("cluster").addEventListener("change", draw);
    document.getElementById("window").addEventListener("change", draw);
    window.addEventListener("resize", () => charts.forEach((c) => c.chart.draw()));
    document.getElementById("updated").textContent = "";
    poll();
  });
})();
