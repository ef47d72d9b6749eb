// The report's behaviour: draw the plots, then the sample browser (filters, paging, random sample).
// Page data arrives as script files (data/pNNNN.js calling window.reportPage): a page opened from
// disk (file://) may not fetch() files beside it, but it may load scripts.
(function () {
  "use strict";
  const R = window.REPORT;
  const FILTERS = ["category", "format", "decision", "reason"];
  const PER_LIST_PAGE = 25;
  const pages = {}, waiting = {};
  let matches = [], listPage = 0, current = null;

  window.reportPage = function (n, data) {
    pages[n] = data;
    (waiting[n] || []).forEach(function (resolve) { resolve(data); });
    delete waiting[n];
  };

  function loadPage(n) {
    if (pages[n]) return Promise.resolve(pages[n]);
    return new Promise(function (resolve, reject) {
      if (!waiting[n]) {
        waiting[n] = [];
        const s = document.createElement("script");
        s.src = "data/p" + String(n).padStart(4, "0") + ".js";
        s.onerror = function () { reject(new Error("cannot load " + s.src)); };
        document.body.appendChild(s);
      }
      waiting[n].push(resolve);
    });
  }

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([k, v]) {
      if (k === "text") e.textContent = v; else if (k === "cls") e.className = v; else e.setAttribute(k, v);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  function drawPlots() {
    Object.entries(R.figures).forEach(function ([id, fig]) {
      const div = document.getElementById("plot-" + id);
      if (!div) return;
      if (!fig) {
        div.classList.add("absent");
        div.appendChild(el("p", { text: R.absent[id] || "no data" }));
        return;
      }
      Plotly.newPlot(div, fig.data, fig.layout, { displaylogo: false, responsive: true })
        .then(function () { div.dataset.drawn = "1"; });
    });
  }

  function fmtS(x) { return x === null || x === undefined ? "?" : Number(x).toFixed(1) + " s"; }

  function frame(src, t, cls) {
    const img = src ? el("img", { src: src, alt: "frame at " + fmtS(t), cls: cls })
                    : el("div", { cls: "missing", text: "no frame" });
    return el("figure", {}, [img, el("figcaption", { text: fmtS(t) })]);
  }

  function showItem(entry) {
    current = entry;
    document.querySelectorAll("#items tbody tr").forEach(function (tr) {
      tr.classList.toggle("selected", tr.dataset.id === entry.id);
    });
    const detail = document.getElementById("detail");
    detail.textContent = "loading...";
    loadPage(entry.page).then(function (page) {
      const item = page.items[entry.id], video = page.videos[entry.video_id];
      detail.textContent = "";
      detail.dataset.item = entry.id;
      detail.appendChild(el("h3", { text: (video.title || video.video_id) + " (" + video.video_id + ")" }));
      detail.appendChild(el("p", { cls: "meta", text: fmtS(video.duration_s) + ", " + video.num_scenes + " scenes" }));
      if (video.media_note) detail.appendChild(el("p", { cls: "note", text: video.media_note }));
      detail.appendChild(el("div", { cls: "strip" }, video.scenes.map(function (s) { return frame(s.frame, s.keyframe_s, "keyframe"); })));
      if (!item) { detail.appendChild(el("p", { cls: "meta", text: entry.reason })); return; }
      detail.appendChild(el("p", {}, [el("span", { cls: "badge " + item.decision, text: item.decision }),
        el("span", { text: " " + item.reason + (item.message ? " - " + item.message : "") })]));
      detail.appendChild(el("p", { cls: "meta", text: item.id + " · " + item.category + " / " + item.qa_type + " / " + item.format }));
      detail.appendChild(el("p", { cls: "question" }, [el("b", { text: "Q: " }), el("span", { text: item.question })]));
      if (item.options.length) {
        detail.appendChild(el("ol", { cls: "options", type: "A" }, item.options.map(function (o) {
          return el("li", { cls: o === item.answer ? "answer" : "", text: o });
        })));
      }
      detail.appendChild(el("p", {}, [el("b", { text: "A: " }), el("span", { text: item.answer })]));
      const [s, e] = item.span, d = video.duration_s || 1;
      detail.appendChild(el("p", { text: "evidence span " + fmtS(s) + " - " + fmtS(e) + " of " + fmtS(video.duration_s) }));
      if (s !== null && e !== null) {
        const bar = el("div", { cls: "span" });
        bar.style.left = (100 * s / d) + "%"; bar.style.width = (100 * (e - s) / d) + "%";
        detail.appendChild(el("div", { cls: "timeline" }, [bar]));
      }
      detail.appendChild(el("div", { cls: "span-frames" }, item.frames.map(function (f) { return frame(f.src, f.t, "span-frame"); })));
      if (item.answers.length || item.blind_answer) {
        detail.appendChild(el("p", { text: "verifier " + (item.verifier || "") + ": pass rate " + item.pass_rate + ", score " + item.score + ", k " + item.k }));
        detail.appendChild(el("ul", { cls: "answers" }, item.answers.map(function (a) { return el("li", { text: a }); })
          .concat(item.blind_answer ? [el("li", { text: "without the video: " + item.blind_answer })] : [])));
      }
    }).catch(function (err) { detail.textContent = String(err); });
  }

  function shortId(m) {  // "v<sampled video number>" + the item's own suffix (the detail pane names the video)
    return "v" + m.video + (m.id.startsWith(m.video_id + "-") ? m.id.slice(m.video_id.length) : " " + m.id);
  }

  function renderList() {
    const tbody = document.querySelector("#items tbody");
    tbody.textContent = "";
    const pagesN = Math.max(1, Math.ceil(matches.length / PER_LIST_PAGE));
    listPage = Math.min(listPage, pagesN - 1);
    matches.slice(listPage * PER_LIST_PAGE, (listPage + 1) * PER_LIST_PAGE).forEach(function (m) {
      const tr = el("tr", {}, [shortId(m), m.category, m.format, m.decision, m.reason].map(function (v) { return el("td", { text: v }); }));
      tr.dataset.id = m.id;
      tr.addEventListener("click", function () { showItem(m); });
      tbody.appendChild(tr);
    });
    document.getElementById("page-label").textContent = (listPage + 1) + " / " + pagesN;
    document.getElementById("match-count").textContent = matches.length + " of " + R.index.items.length + " items";
  }

  function applyFilters() {
    const chosen = {};
    FILTERS.forEach(function (f) { chosen[f] = document.getElementById("f-" + f).value; });
    matches = R.index.items.filter(function (it) {
      return FILTERS.every(function (f) { return !chosen[f] || it[f] === chosen[f]; });
    });
    listPage = 0;
    renderList();
    if (matches.length) showItem(matches[0]);
    else { const d = document.getElementById("detail"); d.textContent = "no item matches"; delete d.dataset.item; }
  }

  function setupBrowser() {
    FILTERS.forEach(function (f) {
      const select = document.getElementById("f-" + f);
      const values = Array.from(new Set(R.index.items.map(function (it) { return it[f]; }))).sort();
      select.appendChild(el("option", { value: "", text: "all" }));
      values.forEach(function (v) { select.appendChild(el("option", { value: v, text: v })); });
      select.addEventListener("change", applyFilters);
    });
    document.getElementById("random").addEventListener("click", function () {
      if (!matches.length) return;
      const pick = matches[Math.floor(Math.random() * matches.length)];
      listPage = Math.floor(matches.indexOf(pick) / PER_LIST_PAGE);
      renderList();
      showItem(pick);
    });
    document.getElementById("prev").addEventListener("click", function () { if (listPage > 0) { listPage--; renderList(); } });
    document.getElementById("next").addEventListener("click", function () {
      if ((listPage + 1) * PER_LIST_PAGE < matches.length) { listPage++; renderList(); }
    });
    applyFilters();
  }

  drawPlots();
  setupBrowser();
})();
