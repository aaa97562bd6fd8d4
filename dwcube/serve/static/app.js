// dwcube serve: the viewer. Plain browser JavaScript over Leaflet (vendored in static/vendor/leaflet).
// It only asks the server's JSON API (/api/...) and shows what it answers.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const state = { archives: [], archive: null, layer: "label", date: 0, after: 0, swipe: false, point: null, latlng: null };
  const layerTitle = (name) => name === "label" ? "Label" : name === "smoothed" ? "Label (HMM-smoothed)" :
    name === "change_date" ? "Change date" : name === "rgb" ? "RGB image" : "Probability: " + name.split("/")[1].replace(/_/g, " ");
  const RAMPS = { // the server's colour ramps (rio-tiler viridis / magma), for the legend
    viridis: "linear-gradient(to right,#440154,#3b528b,#21918c,#5ec962,#fde725)",
    magma: "linear-gradient(to right,#000004,#51127c,#b73779,#fc8961,#fcfdbf)",
  };

  function status(text, isError) {
    const el = $("status");
    el.textContent = text || "";
    el.className = isError ? "error" : "";
  }

  async function getJSON(url, options) {
    const r = await fetch(url, options);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.detail || (r.status + " " + r.statusText));
    return body;
  }

  // --- map ---------------------------------------------------------------------------------
  const map = L.map("map", { zoomControl: true, attributionControl: true });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
  map.createPane("before").style.zIndex = 400;
  map.createPane("after").style.zIndex = 410;
  let beforeLayer = null, afterLayer = null, marker = null, swipeLine = null;

  function tileUrl(layer, dateIndex) {
    const a = state.archive;
    return "api/" + encodeURIComponent(a.name) + "/tiles/" + layer + "/" + encodeURIComponent(a.dates[dateIndex]) + "/{z}/{x}/{y}.png";
  }

  function tileLayer(layer, dateIndex, pane) {
    const a = state.archive;
    const bounds = L.latLngBounds([a.bounds[1], a.bounds[0]], [a.bounds[3], a.bounds[2]]);
    const t = L.tileLayer(tileUrl(layer, dateIndex), {
      pane: pane, bounds: bounds, minZoom: a.zoom.min, maxZoom: a.zoom.max + 2, maxNativeZoom: a.zoom.max,
      minNativeZoom: a.zoom.min, opacity: 1, className: "tiles-" + pane,
      attribution: "dwcube archive " + a.name + " (" + (a.model.name || "model") + ")",
    });
    t.on("tileerror", () => status("a tile failed to load (" + layer + ", " + a.dates[dateIndex].slice(0, 10) + ")", true));
    return t;
  }

  function redrawLayers() {
    if (!state.archive) return;
    if (beforeLayer) map.removeLayer(beforeLayer);
    if (afterLayer) { map.removeLayer(afterLayer); afterLayer = null; }
    beforeLayer = tileLayer(state.layer, state.date, "before").addTo(map);
    if (state.swipe) {
      afterLayer = tileLayer(state.layer, state.after, "after").addTo(map);
    }
    clipAfter();
    document.body.dataset.layer = state.layer;
    document.body.dataset.date = state.archive.dates[state.date];
  }

  function clipAfter() {
    const pane = map.getPane("after");
    if (!state.swipe) { pane.style.clip = ""; if (swipeLine) swipeLine.style.display = "none"; return; }
    const size = map.getSize();
    const nw = map.containerPointToLayerPoint([0, 0]);
    const se = map.containerPointToLayerPoint(size);
    const x = size.x * Number($("swipe-handle").value) / 1000;
    pane.style.clip = "rect(" + nw.y + "px," + se.x + "px," + se.y + "px," + (nw.x + x) + "px)";
    if (!swipeLine) { swipeLine = L.DomUtil.create("div", "swipe-line", map.getContainer()); }
    swipeLine.style.display = "";
    swipeLine.style.left = x + "px";
  }
  map.on("move zoom resize", clipAfter);

  // --- controls ----------------------------------------------------------------------------
  function fillLayers() {
    const sel = $("layer");
    sel.innerHTML = "";
    for (const name of state.archive.layers) {
      const o = document.createElement("option");
      o.value = name; o.textContent = layerTitle(name);
      sel.appendChild(o);
    }
    if (!state.archive.layers.includes(state.layer)) state.layer = "label";
    sel.value = state.layer;
  }

  function showDate() {
    const a = state.archive;
    $("date-label").textContent = a.dates[state.date].slice(0, 10);
    $("after-label").textContent = a.dates[state.after].slice(0, 10);
    $("date").value = state.date;
    $("after").value = state.after;
  }

  function legend() {
    const el = $("legend");
    el.innerHTML = "";
    const kind = state.layer.startsWith("probability/") ? "ramp" : state.layer === "change_date" ? "age" :
      state.layer === "rgb" ? "rgb" : "label";
    if (kind === "label") {
      for (const c of state.archive.classes) {
        const row = document.createElement("div");
        row.innerHTML = '<i style="background:' + c.color + '"></i>' + c.name.replace(/_/g, " ");
        el.appendChild(row);
      }
    } else if (kind === "ramp") {
      el.innerHTML = '<div>0 <i class="ramp" style="background:' + RAMPS.viridis + '"></i> 1</div><div>probability of ' +
        state.layer.split("/")[1].replace(/_/g, " ") + "</div>";
    } else if (kind === "age") {
      el.innerHTML = '<div>0 <i class="ramp" style="background:' + RAMPS.magma + '"></i> ≥ 365 days</div>' +
        "<div>lasting class changes dated on or before this date, by their age</div>";
    } else {
      el.innerHTML = "<div>true-colour image of the input reflectance on this date</div>";
    }
  }

  function selectArchive(name) {
    state.archive = state.archives.find((a) => a.name === name);
    const a = state.archive;
    state.date = 0; state.after = a.dates.length - 1;
    for (const id of ["date", "after"]) { $(id).max = a.dates.length - 1; }
    fillLayers(); showDate(); legend();
    map.fitBounds([[a.bounds[1], a.bounds[0]], [a.bounds[3], a.bounds[2]]]);
    if (map.getZoom() < a.zoom.min) map.setZoom(a.zoom.min);
    redrawLayers();
    scorecard();
  }

  $("archive").addEventListener("change", (e) => selectArchive(e.target.value));
  $("layer").addEventListener("change", (e) => { state.layer = e.target.value; legend(); redrawLayers(); });
  $("date").addEventListener("input", (e) => setDate(Number(e.target.value)));
  $("after").addEventListener("input", (e) => { state.after = Number(e.target.value); showDate(); redrawLayers(); });
  $("swipe").addEventListener("change", (e) => {
    state.swipe = e.target.checked;
    $("after-box").hidden = !state.swipe; $("swipe-handle").hidden = !state.swipe;
    redrawLayers();
  });
  $("swipe-handle").addEventListener("input", clipAfter);

  function setDate(i) {
    state.date = i;
    showDate(); redrawLayers(); scorecardTable();
    if (state.point) { drawChart(state.point); showInset(); }
  }

  // --- pixel chart -------------------------------------------------------------------------
  map.on("click", async (e) => {
    if (!state.archive) return;
    state.latlng = e.latlng;
    try {
      const p = await getJSON("api/" + encodeURIComponent(state.archive.name) + "/point?lon=" + e.latlng.lng.toFixed(7) +
        "&lat=" + e.latlng.lat.toFixed(7));
      state.point = p;
      if (marker) map.removeLayer(marker);
      marker = L.circleMarker(e.latlng, { radius: 6, color: "#000", weight: 2, fillOpacity: 0 }).addTo(map);
      drawChart(p);
      status("pixel row " + p.row + ", col " + p.col);
    } catch (err) {
      status(err.message, true);
    }
  });

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG, tag);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(el);
    return el;
  }

  function drawChart(p) {
    const box = $("chart");
    box.innerHTML = "";
    $("pixel-info").textContent = "Row " + p.row + ", col " + p.col + " (" + p.lat.toFixed(5) + "°, " + p.lon.toFixed(5) +
      "°): raw probabilities (dots, thin lines) and HMM-smoothed (thick lines); click a date.";
    const W = 360, H = 210, L0 = 30, R0 = 8, T0 = 8, B0 = 26;
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, id: "chart-svg", "data-row": p.row, "data-col": p.col }, box);
    const times = p.dates.map((d) => Date.parse(d + "Z"));
    const t0 = Math.min(...times), t1 = Math.max(...times);
    const X = (t) => L0 + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - L0 - R0);
    const Y = (v) => T0 + (1 - v) * (H - T0 - B0);
    for (const v of [0, 0.5, 1]) {
      svg("line", { x1: L0, x2: W - R0, y1: Y(v), y2: Y(v), stroke: "#ddd" }, root);
      svg("text", { x: L0 - 4, y: Y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#555" }, root).textContent = v;
    }
    for (const i of [0, p.dates.length - 1]) {
      svg("text", { x: X(times[i]), y: H - 8, "text-anchor": i ? "end" : "start", "font-size": 10, fill: "#555" }, root)
        .textContent = p.dates[i].slice(0, 10);
    }
    const now = svg("line", { id: "chart-now", x1: X(times[state.date]), x2: X(times[state.date]), y1: T0, y2: H - B0,
      stroke: "#000", "stroke-dasharray": "3,2", "data-date": state.date }, root);
    now.setAttribute("data-date-iso", p.dates[state.date]);
    p.classes.forEach((name, k) => {
      const color = (state.archive.classes.find((c) => c.name === name) || { color: "#888" }).color;
      const seg = (series) => series.map((row, i) => row && row[k] !== null ? X(times[i]).toFixed(1) + "," + Y(row[k]).toFixed(1) : null)
        .filter((s) => s).join(" ");
      svg("polyline", { points: seg(p.smoothed), fill: "none", stroke: color, "stroke-width": 2.5, class: "smoothed",
        "data-class": name }, root);
      svg("polyline", { points: seg(p.probability), fill: "none", stroke: color, "stroke-width": 0.8, "stroke-opacity": 0.7,
        class: "raw", "data-class": name }, root);
      p.probability.forEach((row, i) => {
        if (!row || row[k] === null) return;
        const c = svg("circle", { cx: X(times[i]), cy: Y(row[k]), r: 3, fill: color, class: "pt",
          "data-date": i, "data-class": name, "data-p": row[k] }, root);
        svg("title", {}, c).textContent = name + " " + p.dates[i].slice(0, 10) + ": " + row[k].toFixed(3);
        c.addEventListener("click", (ev) => { ev.stopPropagation(); setDate(i); showInset(); });
      });
    });
  }

  // the RGB quicklook (or, without one, the label) of the chart's date around the pixel
  let inset = null, insetLayer = null;
  function showInset() {
    if (!state.latlng || !state.archive) return;
    const layer = state.archive.layers.includes("rgb") ? "rgb" : "label";
    $("inset-box").hidden = false;
    $("inset-title").textContent = (layer === "rgb" ? "Image" : "Label (no quicklook kept)") + " on " +
      state.archive.dates[state.date].slice(0, 10);
    if (!inset) {
      inset = L.map("inset", { zoomControl: false, attributionControl: false, dragging: false, scrollWheelZoom: false,
        doubleClickZoom: false, boxZoom: false, keyboard: false });
    }
    if (insetLayer) inset.removeLayer(insetLayer);
    const a = state.archive;
    insetLayer = L.tileLayer(tileUrl(layer, state.date), { minZoom: a.zoom.min, maxZoom: a.zoom.max + 2,
      maxNativeZoom: a.zoom.max, bounds: L.latLngBounds([a.bounds[1], a.bounds[0]], [a.bounds[3], a.bounds[2]]),
      className: "tiles-inset" }).addTo(inset);
    inset.invalidateSize();
    inset.setView(state.latlng, Math.min(a.zoom.max, Math.max(map.getZoom(), a.zoom.native)));
    L.circleMarker(state.latlng, { radius: 5, color: "#fff", weight: 2, fillOpacity: 0 }).addTo(inset);
  }

  // --- area scorecard of the view ----------------------------------------------------------
  let scoreTimer = null, score = null;
  function scorecard() {
    clearTimeout(scoreTimer);
    scoreTimer = setTimeout(async () => {
      const a = state.archive;
      if (!a) return;
      const b = map.getBounds();
      const w = Math.max(b.getWest(), a.bounds[0]), s = Math.max(b.getSouth(), a.bounds[1]);
      const e = Math.min(b.getEast(), a.bounds[2]), n = Math.min(b.getNorth(), a.bounds[3]);
      if (!(w < e && s < n)) { score = null; $("scorecard").textContent = "the view does not show the archive"; return; }
      try {
        score = await getJSON("api/" + encodeURIComponent(a.name) + "/area?bbox=" + [w, s, e, n].map((v) => v.toFixed(6)).join(","));
        scorecardTable();
      } catch (err) {
        score = null; $("scorecard").textContent = err.message;
      }
    }, 250);
  }
  map.on("moveend", scorecard);

  function scorecardTable() {
    if (!score) return;
    const row = score.area[state.date];
    const total = score.total_area || 1;
    const rows = score.classes.map((name, k) => {
      const c = state.archive.classes.find((x) => x.name === name) || { color: "#888" };
      const share = row[k] / total;
      return "<tr data-class='" + name + "'><td><i style='display:inline-block;width:10px;height:10px;background:" + c.color +
        "'></i> " + name.replace(/_/g, " ") + "</td><td style='text-align:right'>" + row[k].toFixed(3) + "</td><td>" +
        "<span class='bar' style='width:" + (100 * share).toFixed(1) + "px;background:" + c.color + "'></span></td></tr>";
    }).join("");
    $("scorecard").innerHTML = "<table id='score-table' data-date='" + score.dates[state.date] + "'><tr><th>class</th><th>" +
      score.unit.replace("km2", "km²") + "</th><th></th></tr>" + rows + "<tr><td>no data</td><td style='text-align:right'>" +
      score.nodata_area[state.date].toFixed(3) + "</td><td></td></tr></table>";
  }

  // --- start -------------------------------------------------------------------------------
  getJSON("api/archives").then((archives) => {
    state.archives = archives;
    const sel = $("archive");
    for (const a of archives) {
      const o = document.createElement("option");
      o.value = a.name; o.textContent = a.name + " (" + a.dates.length + " dates)";
      sel.appendChild(o);
    }
    if (archives.length) selectArchive(archives[0].name);
    document.body.dataset.ready = "1";
    window.dwcubeViewer = { map: map, state: state };  // for debugging and the browser tests
  }).catch((err) => status("cannot list the archives: " + err.message, true));
})();
