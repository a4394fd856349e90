// A small line chart on <canvas>: time on x, one or more series on y, optionally stacked. Series
// differ by colour *and* dash pattern, and the legend repeats both, so the chart reads without
// colour too. No dependencies.
"use strict";

(() => {
  const COLOURS = ["#2457c5", "#d9480f", "#2b8a3e", "#9c36b5", "#c92a2a", "#0b7285", "#e67700", "#5c940d", "#862e9c", "#495057"];
  const DASHES = [[], [6, 3], [2, 3], [10, 3, 2, 3], [4, 4], [1, 2], [12, 4], [3, 6]];

  function niceStep(range, ticks) {
    const raw = range / Math.max(1, ticks);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
  }

  function label(v) {
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (Math.abs(v) >= 1e3) return (v / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
    return String(Math.round(v * 100) / 100);
  }

  class Chart {
    // opts: {title, unit, stacked, max (fixed y maximum, e.g. 100 for percent)}
    constructor(figure, opts) {
      this.opts = opts;
      this.canvas = figure.querySelector("canvas");
      this.legend = figure.querySelector(".legend");
      this.now = figure.querySelector(".now");
      this.series = [];
      this.times = [];
    }

    // times: Unix ms; series: [{label, values (null = gap), width}]; from..to: the window.
    set(times, series, from, to) {
      this.times = times;
      this.series = series.map((s, i) => Object.assign({
        colour: COLOURS[i % COLOURS.length],
        dash: DASHES[i % DASHES.length],
      }, s));
      this.from = from;
      this.to = to;
      this.drawLegend();
      this.draw();
    }

    // How many non-null points the chart holds (the live page exposes this for tests).
    points() {
      return this.series.reduce((n, s) => n + s.values.filter((v) => v !== null && v !== undefined).length, 0);
    }

    // The largest value it holds (0 if none).
    max() {
      let m = 0;
      for (const s of this.series) for (const v of s.values) if (v !== null && v !== undefined && v > m) m = v;
      return m;
    }

    drawLegend() {
      const items = this.series.map((s) => {
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("width", "22");
        svg.setAttribute("height", "8");
        svg.setAttribute("aria-hidden", "true");
        const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
        line.setAttribute("x1", "0"); line.setAttribute("y1", "4");
        line.setAttribute("x2", "22"); line.setAttribute("y2", "4");
        line.setAttribute("stroke", s.colour);
        line.setAttribute("stroke-width", String(s.width || 2));
        if (s.dash.length) line.setAttribute("stroke-dasharray", s.dash.join(" "));
        svg.append(line);
        const span = document.createElement("span");
        const last = [...s.values].reverse().find((v) => v !== null && v !== undefined);
        span.append(svg, `${s.label} ${last === undefined ? "–" : label(last)}`);
        return span;
      });
      this.legend.replaceChildren(...items);
    }

    draw() {
      const c = this.canvas;
      const dpr = window.devicePixelRatio || 1;
      const w = c.clientWidth || 400;
      const h = c.clientHeight || 180;
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const g = c.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      const style = getComputedStyle(document.body);
      const fg = style.getPropertyValue("--muted").trim() || "#666";
      const grid = style.getPropertyValue("--line").trim() || "#ddd";

      // Values to draw (stacked: cumulative sums, drawn top series last).
      let lines = this.series.map((s) => s.values.slice());
      let bases = null; // stacked: each layer's bottom
      if (this.opts.stacked) {
        const acc = new Array(this.times.length).fill(null);
        bases = [];
        lines = lines.map((vals) => {
          bases.push(acc.slice());
          return vals.map((v, i) => {
            if (v === null || v === undefined) return acc[i];
            acc[i] = (acc[i] || 0) + v;
            return acc[i];
          });
        });
      }
      let max = this.opts.max || 0;
      if (!this.opts.max) {
        for (const vals of lines) for (const v of vals) if (v !== null && v > max) max = v;
        max = max > 0 ? max * 1.1 : 1;
      }
      const step = niceStep(max, 4);
      if (!this.opts.max) max = Math.ceil(max / step) * step;

      const left = 44, right = 8, top = 8, bottom = 20;
      const pw = w - left - right, ph = h - top - bottom;
      const from = this.from, to = this.to;
      const x = (t) => left + ((t - from) / Math.max(1, to - from)) * pw;
      const y = (v) => top + ph - (v / max) * ph;

      g.font = "11px system-ui, sans-serif";
      g.lineWidth = 1;
      g.strokeStyle = grid;
      g.fillStyle = fg;
      g.textAlign = "right";
      g.textBaseline = "middle";
      for (let v = 0; v <= max + 1e-9; v += step) {
        g.beginPath();
        g.moveTo(left, Math.round(y(v)) + 0.5);
        g.lineTo(w - right, Math.round(y(v)) + 0.5);
        g.stroke();
        g.fillText(label(v) + (this.opts.unit || ""), left - 4, y(v));
      }
      g.textAlign = "center";
      g.textBaseline = "top";
      const span = (to - from) / 1000;
      const tick = span > 600 ? 180 : span > 240 ? 60 : span > 90 ? 30 : 10;
      for (let s = 0; s <= span; s += tick) {
        const t = to - s * 1000;
        // Keep the edge labels inside the canvas.
        g.textAlign = s === 0 ? "right" : s + tick > span ? "left" : "center";
        g.fillText(s === 0 ? "now" : `-${s >= 60 ? s / 60 + "m" : s + "s"}`, s === 0 ? w - right : x(t), h - bottom + 4);
      }

      g.save();
      g.beginPath();
      g.rect(left, top, pw, ph);
      g.clip();
      if (bases) {
        // Stacked: fill each layer between its bottom and its top.
        lines.forEach((vals, i) => {
          g.fillStyle = this.series[i].colour;
          g.globalAlpha = 0.3;
          let j = 0;
          while (j < vals.length) {
            while (j < vals.length && vals[j] === null) j++;
            const from = j;
            while (j < vals.length && vals[j] !== null) j++;
            if (j - from < 2) continue;
            g.beginPath();
            for (let k = from; k < j; k++) g.lineTo(x(this.times[k]), y(vals[k]));
            for (let k = j - 1; k >= from; k--) g.lineTo(x(this.times[k]), y(bases[i][k] || 0));
            g.closePath();
            g.fill();
          }
        });
        g.globalAlpha = 1;
      }
      // Stacked layers are stroked top first, so where a layer is empty the one below shows.
      const order = lines.map((_, i) => i);
      if (bases) order.reverse();
      order.forEach((i) => {
        const vals = lines[i];
        const s = this.series[i];
        g.strokeStyle = s.colour;
        g.lineWidth = s.width || 1.5;
        g.setLineDash(s.dash);
        g.beginPath();
        let pen = false;
        vals.forEach((v, j) => {
          if (v === null || v === undefined) { pen = false; return; }
          const px = x(this.times[j]), py = y(v);
          if (pen) g.lineTo(px, py); else g.moveTo(px, py);
          pen = true;
        });
        g.stroke();
      });
      g.restore();
      g.setLineDash([]);
    }
  }

  window.director = window.director || {};
  window.director.Chart = Chart;
})();
