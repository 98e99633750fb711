// fedmark governance dashboard: reads the /v1 JSON endpoints with the token the user gives and draws
// its charts as inline SVG (no CDN, no library). window.dashboardReady turns true once everything is drawn;
// window.dashboardErrors collects anything that went wrong (the browser test checks it is empty).
(() => {
  'use strict';
  const SVG = 'http://www.w3.org/2000/svg';
  const COLORS = ['#2f6fde', '#f08c2e', '#2aa876', '#c2415b', '#8a5cd1', '#17a2b8'];
  const $ = (id) => document.getElementById(id);
  window.dashboardReady = false;
  window.dashboardErrors = [];

  // A token given in the address (?token=…) leaves it at once: it moves to sessionStorage (this tab only) and
  // the address is rewritten without it, so it stays out of history, bookmarks, screenshots and Referer
  // headers. From then on it travels only in the Authorization header.
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get('token');
  if (fromUrl !== null) {
    if (fromUrl) sessionStorage.setItem('fedmarkToken', fromUrl);
    params.delete('token');
    const rest = params.toString();
    history.replaceState(history.state, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
  }
  let token = sessionStorage.getItem('fedmarkToken') || '';
  let model = params.get('model') || '';

  function status(text, isError) {
    const el = $('status');
    el.textContent = text;
    el.className = isError ? 'error' : '';
  }

  async function api(path) {
    const r = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const err = new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${r.status}`);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  function el(tag, attrs = {}, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(x, digits = 3) {
    if (x === null || x === undefined || Number.isNaN(x)) return 'n/a';
    const a = Math.abs(x);
    if (a !== 0 && (a >= 1e4 || a < 1e-3)) return x.toExponential(2);
    return Number(x.toFixed(digits)).toString();
  }
  const pct = (x) => (x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`);

  function empty(container, text) {
    container.replaceChildren();
    const d = document.createElement('div');
    d.className = 'empty';
    d.textContent = text;
    container.appendChild(d);
  }

  // ------------------------------------------------------------------ charts
  function niceScale(lo, hi) {
    // Round axis ends to a 1-2-2.5-5 step so the tick labels are readable numbers.
    const range = (hi - lo) || Math.abs(hi) || 1;
    const raw = range / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw);
    return { lo: Math.floor(lo / step) * step, hi: Math.ceil(hi / step) * step, step };
  }

  function frame(container, w, h, scale, yLabel) {
    container.replaceChildren();
    const svg = el('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img' });
    container.appendChild(svg);
    const m = { l: 58, r: 12, t: 12, b: 34 };
    const ih = h - m.t - m.b;
    const ticks = Math.round((scale.hi - scale.lo) / scale.step);
    for (let i = 0; i <= ticks; i++) {
      const y = m.t + ih - (ih * i) / ticks;
      el('line', { x1: m.l, x2: w - m.r, y1: y, y2: y, stroke: '#e6ebf1' }, svg);
      const t = el('text', { x: m.l - 8, y: y + 4, 'text-anchor': 'end' }, svg);
      t.textContent = fmt(scale.lo + i * scale.step, 3);
    }
    if (yLabel) {
      const t = el('text', { x: 11, y: m.t + ih / 2, transform: `rotate(-90 11 ${m.t + ih / 2})`, 'text-anchor': 'middle' }, svg);
      t.textContent = yLabel;
    }
    const y = (v) => m.t + ih - (ih * (v - scale.lo)) / (scale.hi - scale.lo);
    return { svg, m, iw: w - m.l - m.r, ih, y };
  }

  function lineChart(container, points, label) {
    if (!points.length) return empty(container, 'no DP versions yet (ε appears once a round adds noise)');
    const w = 520, h = 220;
    const { svg, m, iw, ih, y: yOf } = frame(container, w, h, niceScale(0, Math.max(...points.map((p) => p.y)) * 1.05), label);
    const pad = 16;
    const step = points.length > 1 ? (iw - 2 * pad) / (points.length - 1) : 0;
    const xy = points.map((p, i) => [m.l + pad + (points.length > 1 ? i * step : (iw - 2 * pad) / 2), yOf(p.y)]);
    const d = xy.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
    const area = `${d} L${xy[xy.length - 1][0].toFixed(1)},${m.t + ih} L${xy[0][0].toFixed(1)},${m.t + ih} Z`;
    el('path', { d: area, fill: 'rgba(47,111,222,.10)', class: 'area' }, svg);
    el('path', { d, fill: 'none', stroke: COLORS[0], 'stroke-width': 2.2, class: 'series' }, svg);
    xy.forEach(([x, y], i) => {
      const c = el('circle', { cx: x, cy: y, r: 3.6, fill: '#fff', stroke: COLORS[0], 'stroke-width': 2, class: 'point', 'data-value': points[i].y }, svg);
      el('title', {}, c).textContent = `${points[i].x}: ε = ${fmt(points[i].y)}`;
      const t = el('text', { x, y: h - 14, 'text-anchor': 'middle' }, svg);
      t.textContent = points[i].x;
    });
  }

  function barChart(container, groups, series, opts = {}) {
    // groups: [{label, values: [number|null per series]}]
    if (!groups.length) return empty(container, opts.emptyText || 'no data yet');
    const w = 520, h = 220;
    const all = groups.flatMap((g) => g.values).filter((v) => v !== null && v !== undefined);
    const scale = niceScale(Math.min(0, ...all) * 1.1, Math.max(0, ...all) * 1.12);
    const { svg, m, iw, y: yOf } = frame(container, w, h, scale, opts.yLabel);
    const zeroY = yOf(0);
    const gw = iw / groups.length;
    const bw = Math.min(38, (gw * 0.7) / series.length);
    groups.forEach((g, gi) => {
      const x0 = m.l + gi * gw + (gw - bw * series.length) / 2;
      g.values.forEach((v, si) => {
        if (v === null || v === undefined) return;
        const hgt = Math.abs(yOf(v) - zeroY);
        const y = v >= 0 ? zeroY - hgt : zeroY;
        const r = el('rect', { x: x0 + si * bw, y, width: bw - 3, height: Math.max(hgt, 1), rx: 2,
          fill: (opts.signColors && v < 0) ? '#c2415b' : COLORS[si % COLORS.length], class: 'bar', 'data-value': v }, svg);
        el('title', {}, r).textContent = `${g.label} · ${series[si]}: ${fmt(v)}`;
        const t = el('text', { x: x0 + si * bw + (bw - 3) / 2, y: v >= 0 ? y - 4 : y + hgt + 12, 'text-anchor': 'middle' }, svg);
        t.textContent = fmt(v, 3);
      });
      const t = el('text', { x: m.l + gi * gw + gw / 2, y: h - 14, 'text-anchor': 'middle' }, svg);
      t.textContent = g.label;
      if (g.values.every((v) => v === null || v === undefined)) {
        const n = el('text', { x: m.l + gi * gw + gw / 2, y: zeroY - 8, 'text-anchor': 'middle', 'font-style': 'italic' }, svg);
        n.textContent = opts.nullText || 'no data';
      }
    });
    el('line', { x1: m.l, x2: w - m.r, y1: zeroY, y2: zeroY, stroke: '#9aa6b4' }, svg);
    if (series.length > 1 || opts.legend) {
      const legend = document.createElement('div');
      legend.className = 'legend';
      series.forEach((s, i) => {
        const span2 = document.createElement('span');
        const sw = document.createElement('i');
        sw.style.background = COLORS[i % COLORS.length];
        span2.append(sw, s);
        legend.appendChild(span2);
      });
      container.appendChild(legend);
    }
  }

  function table(container, head, rows) {
    if (!rows.length) return empty(container, 'nothing yet');
    const t = document.createElement('table');
    const tr = t.createTHead().insertRow();
    head.forEach(([h, num]) => {
      const th = document.createElement('th');
      th.textContent = h;
      if (num) th.className = 'num';
      tr.appendChild(th);
    });
    const body = t.createTBody();
    rows.forEach((r) => {
      const row = body.insertRow();
      r.forEach((cell, i) => {
        const td = row.insertCell();
        if (cell && cell.pill) {
          const s = document.createElement('span');
          s.className = `pill ${cell.pill}`;
          s.textContent = cell.pill;
          td.appendChild(s);
        } else {
          td.textContent = cell === null || cell === undefined ? '–' : String(cell);
        }
        if (head[i][1]) td.className = 'num';
      });
    });
    container.replaceChildren(t);
  }

  // ------------------------------------------------------------------ KPI tiles
  function tile(id, value, note, level) {
    const card = $(id);
    card.querySelector('.value').textContent = value;
    card.querySelector('.note').textContent = note;
    card.classList.remove('good', 'warn', 'bad');
    if (level) card.classList.add(level);
  }

  function drawKpis(k) {
    const rd = k.raw_data_movement_reduction;
    tile('kpi-rdmr', pct(rd.value), `raw-record bytes moved: ${rd.raw_record_bytes_moved}; ${rd.bytes_moved.total.toLocaleString()} B moved vs ${Math.round(rd.centralised_bytes).toLocaleString()} B to centralise ${rd.records_on_devices.toLocaleString()} records`,
      rd.value === null ? null : rd.value > 0.5 ? 'good' : 'warn');
    const gc = k.governed_training_coverage;
    tile('kpi-gtc', pct(gc.value), `${gc.governed} of ${gc.contributions} contributions under a recorded policy decision`,
      gc.value === null ? null : gc.value >= 0.999 ? 'good' : 'bad');
    const pl = k.personalization_lift;
    tile('kpi-pl', pl.value === null ? 'n/a' : `${fmt(pl.value, 2)}×`, pl.value === null ? (pl.reason || '') : `vs ${pl.baseline}${pl.auc !== undefined && pl.auc !== null ? ` · AUC ${fmt(pl.auc)}` : ''} · v${pl.version}`,
      pl.value === null ? null : pl.value > 1 ? 'good' : 'bad');
    const pc = k.partner_model_contribution;
    if (pc.value && typeof pc.value === 'object') {
      const parts = Object.entries(pc.value).map(([p, v]) => `${p} ${v === null ? 'n/a' : (v >= 0 ? '+' : '') + fmt(v)}`);
      tile('kpi-pmc', `${Object.keys(pc.value).length} partners`, `${parts.join(' · ')} (${pc.metric} improvement, v${pc.version})`, 'good');
    } else tile('kpi-pmc', 'n/a', pc.reason || '');
    const mc = k.model_confidence;
    tile('kpi-mc', mc.value || 'n/a', mc.value ? `${mc.metric} spread ${fmt(mc.spread)} across ${mc.regions} regions · max PSI ${fmt(mc.max_psi)}` : (mc.reason || ''),
      mc.value === 'high' ? 'good' : mc.value === 'medium' ? 'warn' : mc.value === 'low' ? 'bad' : null);
    const ca = k.compliant_activation_rate;
    tile('kpi-car', pct(ca.value), `${ca.allowed} of ${ca.requests} activation requests allowed`,
      ca.value === null ? null : ca.value >= 0.9 ? 'good' : 'warn');
  }

  // ------------------------------------------------------------------ load
  async function load() {
    window.dashboardReady = false;
    if (!token) { status('Enter an admin or marketer token.'); return; }
    sessionStorage.setItem('fedmarkToken', token);
    status('Loading…');
    const listing = (await api('/v1/models')).models.filter((m) => !m.line_of);
    if (!listing.length) { status('No models yet.'); window.dashboardReady = true; return; }
    if (!model || !listing.some((m) => m.name === model)) model = listing[0].name;
    const sel = $('model');
    sel.replaceChildren(...listing.map((m) => { const o = document.createElement('option'); o.value = m.name; o.textContent = m.name; return o; }));
    sel.value = model;
    const [detail, rounds, kpis, evaluation] = await Promise.all([
      api(`/v1/models/${encodeURIComponent(model)}`),
      api(`/v1/models/${encodeURIComponent(model)}/rounds`),
      api(`/v1/kpis?model=${encodeURIComponent(model)}`),
      api(`/v1/models/${encodeURIComponent(model)}/evaluations`).catch((e) => { if (e.status === 404) return null; throw e; }),
    ]);
    $('subtitle').textContent = `${model} · current version ${detail.current_version ?? '–'}${detail.candidate ? ` · candidate v${detail.candidate} awaiting its gate` : ''}${kpis.lines.length ? ` · regional lines: ${kpis.lines.join(', ')}` : ''}`;
    drawKpis(kpis);
    const eps = detail.versions.filter((v) => v.epsilon !== null && v.status !== 'variant').map((v) => ({ x: `v${v.version}`, y: v.epsilon }));
    lineChart($('chart-epsilon'), eps, 'ε');
    barChart($('chart-rounds'), rounds.rounds.filter((r) => r.state !== 'open' || r.accepted).map((r) => ({ label: `#${r.seq}`, values: [r.accepted] })),
      ['accepted updates'], { yLabel: 'updates', emptyText: 'no rounds yet' });
    if (evaluation) {
      const metric = evaluation.metric;
      $('region-title').textContent = `${metric.toUpperCase()} by region (evaluation of v${evaluation.target})`;
      const roles = Object.entries(evaluation.versions).filter(([, v]) => v.role !== 'variant');
      const regions = Object.keys(evaluation.versions[String(evaluation.target)].by_region);
      const groups = regions.map((r) => ({ label: r, values: roles.map(([, v]) => (v.by_region[r] && !v.by_region[r].suppressed ? v.by_region[r][metric] : null)) }));
      barChart($('chart-regions'), groups, roles.map(([ver, v]) => `v${ver} (${v.role})`), { legend: true, yLabel: metric, emptyText: 'no region above k_min', nullText: 'suppressed (< k)' });
      const pcs = Object.entries(evaluation.partner_contribution).map(([p, c]) => ({ label: p, values: [c.value] }));
      barChart($('chart-partners'), pcs, [`${metric} improvement from including the partner`], { legend: true, signColors: true, emptyText: 'no leave-one-partner-out evaluation' });
    } else {
      empty($('chart-regions'), 'no federated evaluation yet');
      empty($('chart-partners'), 'no federated evaluation yet');
    }
    table($('versions'), [['version'], ['status'], ['kind'], ['contributors', true], ['ε', true], ['created']],
      detail.versions.slice().reverse().map((v) => [`v${v.version}`, { pill: v.status }, v.kind, v.contributors, v.epsilon === null ? null : fmt(v.epsilon), (v.created_at || '').replace('T', ' ').slice(0, 19)]));
    table($('rounds'), [['round'], ['state'], ['version', true], ['accepted', true], ['goal', true], ['result', true], ['reason']],
      rounds.rounds.slice().reverse().map((r) => [`#${r.seq}`, { pill: r.state }, r.version, r.accepted, r.goal, r.result_version === null ? null : `v${r.result_version}`, r.reason]));
    status(`Loaded ${model} at ${new Date().toLocaleTimeString()}.`);
    window.dashboardReady = true;
  }

  function run() {
    load().catch((e) => {
      window.dashboardErrors.push(String(e && e.message ? e.message : e));
      status(`Could not load: ${e.message}`, true);
      window.dashboardReady = true;
    });
  }

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('token').value.trim() || token;
    model = $('model').value || model;
    run();
  });
  $('model').addEventListener('change', () => { model = $('model').value; run(); });
  window.addEventListener('error', (e) => window.dashboardErrors.push(String(e.message)));
  if (token) run(); else status('Enter an admin or marketer token.');
})();
