// fedmark governance dashboard: reads the /v1 JSON endpoints with the token the user gives and draws
// its charts with Chart.js, served by the fedmark server itself (/dashboard/vendor/, built from
// server/dashboard_src's npm lock; no CDN). window.dashboardReady turns true once everything is drawn;
// window.dashboardErrors collects anything that went wrong (the browser test checks it is empty).
(() => {
  'use strict';
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

  // ------------------------------------------------------------------ charts (Chart.js, served by this server)
  const charts = {};
  window.dashboardCharts = charts;  // the browser test reads what each chart drew

  function chart(id, config, hasData, emptyText) {
    const box = $(id);
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
    box.querySelectorAll('.empty').forEach((n) => n.remove());
    const canvas = box.querySelector('canvas');
    canvas.hidden = !hasData;
    box.style.height = hasData ? '' : 'auto';
    if (!hasData) {
      const d = document.createElement('div');
      d.className = 'empty';
      d.textContent = emptyText;
      box.appendChild(d);
      return;
    }
    if (!window.Chart) {
      throw new Error('the chart library did not load (/dashboard/vendor/chart.umd.min.js): '
        + 'run scripts/build_dashboard.sh on the server');
    }
    const options = {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { display: config.data.datasets.length > 1, position: 'bottom', labels: { boxWidth: 10 } } },
      ...config.options,
    };
    charts[id] = new window.Chart(canvas, { ...config, options });
  }

  // Round labels never run into one string: Chart.js skips labels that would overlap, kept flat.
  const xTicks = { autoSkip: true, maxRotation: 0, autoSkipPadding: 8 };

  function drawEpsilon(points) {
    chart('chart-epsilon', {
      type: 'line',
      data: { labels: points.map((p) => p.x), datasets: [{ label: 'ε', data: points.map((p) => p.y), borderColor: COLORS[0],
        backgroundColor: 'rgba(47,111,222,.12)', fill: true, pointRadius: 3, tension: 0 }] },
      options: { scales: { x: { ticks: xTicks }, y: { beginAtZero: true, title: { display: true, text: 'ε (δ = 1e-5)' } } } },
    }, points.length > 0, 'no DP versions yet (ε appears once a round adds noise)');
  }

  function drawRounds(rounds) {
    chart('chart-rounds', {
      type: 'bar',
      data: { labels: rounds.map((r) => `#${r.seq}`), datasets: [{ label: 'accepted updates', data: rounds.map((r) => r.accepted),
        backgroundColor: COLORS[0] }] },
      options: { scales: { x: { ticks: xTicks, title: { display: true, text: 'round' } },
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: 'updates' } } } },
    }, rounds.length > 0, 'no rounds yet');
  }

  function drawRegions(evaluation) {
    const metric = evaluation ? evaluation.metric : '';
    const roles = evaluation ? Object.entries(evaluation.versions).filter(([, v]) => v.role !== 'variant') : [];
    const regions = evaluation ? Object.keys(evaluation.versions[String(evaluation.target)].by_region) : [];
    const value = (v, r) => (v.by_region[r] && !v.by_region[r].suppressed ? v.by_region[r][metric] : null);
    chart('chart-regions', {
      type: 'bar',
      data: { labels: regions, datasets: roles.map(([ver, v], i) => ({ label: `v${ver} (${v.role})`,
        data: regions.map((r) => value(v, r)), backgroundColor: COLORS[i % COLORS.length] })) },
      // The axis spans the data, not 0..1: the differences between regions are the point.
      options: { scales: { y: { beginAtZero: false, grace: '10%', title: { display: true, text: metric.toUpperCase() } } } },
    }, regions.length > 0 && roles.length > 0, evaluation ? 'no region above k_min' : 'no federated evaluation yet');
  }

  function drawPartners(evaluation) {
    const entries = evaluation ? Object.entries(evaluation.partner_contribution) : [];
    const vals = entries.map(([, c]) => c.value);
    chart('chart-partners', {
      type: 'bar',
      data: { labels: entries.map(([p]) => p), datasets: [{ label: `${evaluation ? evaluation.metric : ''} change from including the partner`,
        data: vals, backgroundColor: vals.map((v) => (v !== null && v < 0 ? '#c2415b' : COLORS[2])) }] },
      options: { plugins: { legend: { display: true, position: 'bottom' } }, scales: { y: { beginAtZero: true } } },
    }, entries.length > 0, evaluation ? 'no leave-one-partner-out evaluation' : 'no federated evaluation yet');
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
    const mb = (b) => (b < 1e5 ? `${(b / 1e3).toFixed(1)} kB` : `${(b / 1e6).toFixed(1)} MB`);
    const none = rd.raw_record_bytes_moved === 0;
    tile('kpi-rdmr', none ? `0 of ${rd.records_on_devices.toLocaleString()}` : `${rd.raw_record_bytes_moved.toLocaleString()} B`,
      (none ? '100 % of raw records stayed on the devices. ' : 'raw-record bytes left the devices. ')
      + `Communication: ${mb(rd.bytes_moved.total)} of model updates and reports (copying the records centrally: ~${mb(rd.centralised_bytes)}).`,
      none ? 'good' : 'bad');
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
    const psi = mc.max_psi ?? (mc.drift_vs_reference ? mc.drift_vs_reference.psi : null);
    const cause = [];
    if (mc.spread !== null && mc.spread !== undefined) cause.push(`${mc.metric} differs by ${fmt(mc.spread)} across ${mc.regions} regions`);
    if (psi !== null && psi !== undefined) cause.push(`score drift PSI ${fmt(psi, 2)} (${psi > 0.25 ? 'large shift' : psi > 0.1 ? 'moderate' : 'stable'})`);
    tile('kpi-mc', mc.value || 'not rated', cause.join(' · ') || mc.reason || 'not enough regions evaluated',
      mc.value === 'high' ? 'good' : mc.value === 'medium' ? 'warn' : mc.value === 'low' ? 'bad' : null);
    const ca = k.compliant_activation_rate;
    tile('kpi-car', pct(ca.value), `${ca.allowed} of ${ca.requests} activation requests allowed`,
      ca.value === null ? null : ca.value >= 0.9 ? 'good' : 'warn');
  }

  // ------------------------------------------------------------------ federation (server/federation)
  // A coordinator lists its regions and what each pushed per global round (counts are >= k, the only
  // thing a region sends besides its noised aggregate and epsilon); a regional server its links and pushes.
  function drawFederation(fed, model) {
    const show = fed && fed.role !== 'single';
    $('federation-regions').hidden = !show;
    $('federation-rounds').hidden = !show;
    if (!show) return;
    const when = (t) => (t ? new Date(1000 * t).toISOString().replace('T', ' ').slice(0, 19) : null);
    if (fed.role === 'global') {
      const rounds = fed.rounds.filter((r) => r.model === model);
      const last = rounds.find((r) => r.state !== 'open');
      $('federation-title').textContent = `Regions · ${fed.regions.length} under this coordinator`;
      table($('federation'), [['region'], ['last seen'], ['devices contributed', true], ['last global round'], ['ε', true]],
        fed.regions.map((g) => {
          const agg = last ? last.aggregates.find((a) => a.region === g.region) : null;
          return [g.region, when(g.last_seen), g.contributors_total,
            !last ? null : agg ? `${agg.contributors} devices` : 'left out', agg && agg.epsilon !== null ? fmt(agg.epsilon) : null];
        }));
      table($('federation-log'), [['round'], ['state'], ['version', true], ['result', true], ['regions (devices)'], ['reason']],
        rounds.map((r) => [r.id, { pill: r.state }, r.version, r.result_version === null ? null : `v${r.result_version}`,
          r.aggregates.map((a) => `${a.region} ${a.contributors}`).join(' · ') || null, r.reason]));
    } else {
      $('federation-title').textContent = `Region ${fed.region} · coordinator ${fed.upstream}${fed.last_error ? ' · unreachable' : ''}`;
      table($('federation'), [['model'], ['global version', true], ['local version', true]],
        fed.links.filter((l) => l.model === model).reverse().map((l) => [l.model, `v${l.global_version}`, `v${l.local_version}`]));
      table($('federation-log'), [['sub-round'], ['push'], ['global round'], ['at']],
        fed.pushes.filter((p) => p.model === model).map((p) => [p.round_id, p.state, p.global_round, when(p.at)]));
    }
  }

  // ------------------------------------------------------------------ readiness (Prepare)
  function drawReadiness(a) {
    const list = $('readiness-summary');
    if (!a) {
      list.replaceChildren();
      return empty($('readiness'), 'no statistics release yet: open a statistics task (POST /v1/models/<name>/statistics)');
    }
    list.replaceChildren(...a.summary.map((line) => { const li = document.createElement('li'); li.textContent = line; return li; }));
    const share = (v) => (v === null || v === undefined ? null : pct(v));
    const maxOf = (o) => { const v = Object.values(o || {}).filter((x) => x !== null); return v.length ? Math.max(...v) : null; };
    table($('readiness'), [['region'], ['partner'], ['verdict'], ['devices', true], ['conformity', true], ['consent', true],
      ['max missing', true], ['minority label', true], ['max PSI', true], ['why']],
    Object.values(a.cells).map((c) => {
      const ch = c.checks || {};
      const psi = maxOf(ch.psi);
      return [c.region, c.partner, { pill: c.suppressed ? 'suppressed' : c.ready ? 'ready' : 'not-ready' }, c.devices,
        share(ch.conformity), share(ch.consent), share(maxOf(ch.missing)), share(ch.label_minority),
        psi === null ? null : fmt(psi, 2), (c.reasons || []).join('; ')];
    }));
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
    const [detail, rounds, kpis, evaluation, federation, assessment] = await Promise.all([
      api(`/v1/models/${encodeURIComponent(model)}`),
      api(`/v1/models/${encodeURIComponent(model)}/rounds`),
      api(`/v1/kpis?model=${encodeURIComponent(model)}`),
      api(`/v1/models/${encodeURIComponent(model)}/evaluations`).catch((e) => { if (e.status === 404) return null; throw e; }),
      api('/v1/federation/status'),
      api(`/v1/models/${encodeURIComponent(model)}/readiness`).catch((e) => { if (e.status === 404) return null; throw e; }),
    ]);
    $('subtitle').textContent = `${model} · current version ${detail.current_version ?? '–'}${detail.candidate ? ` · candidate v${detail.candidate} awaiting its gate` : ''}${kpis.lines.length ? ` · regional lines: ${kpis.lines.join(', ')}` : ''}`;
    drawKpis(kpis);
    const eps = detail.versions.filter((v) => v.epsilon !== null && v.status !== 'variant').map((v) => ({ x: `v${v.version}`, y: v.epsilon }));
    drawEpsilon(eps);
    drawRounds(rounds.rounds.filter((r) => r.state !== 'open' || r.accepted).slice().sort((a, b) => a.seq - b.seq));
    if (evaluation) $('region-title').textContent = `${evaluation.metric.toUpperCase()} by region (evaluation of v${evaluation.target})`;
    drawRegions(evaluation);
    drawPartners(evaluation);
    table($('versions'), [['version'], ['status'], ['kind'], ['contributors', true], ['ε', true], ['created']],
      detail.versions.slice().reverse().map((v) => [`v${v.version}`, { pill: v.status }, v.kind, v.contributors, v.epsilon === null ? null : fmt(v.epsilon), (v.created_at || '').replace('T', ' ').slice(0, 19)]));
    table($('rounds'), [['round'], ['state'], ['version', true], ['accepted', true], ['goal', true], ['result', true], ['reason']],
      rounds.rounds.slice().reverse().map((r) => [`#${r.seq}`, { pill: r.state }, r.version, r.accepted, r.goal, r.result_version === null ? null : `v${r.result_version}`, r.reason]));
    drawFederation(federation, model);
    drawReadiness(assessment);
    status(`Loaded ${model} at ${new Date().toLocaleTimeString()}.`);
    window.dashboardReady = true;
  }

  function run() {
    load().catch((e) => {
      window.dashboardErrors.push(String(e && e.message ? e.message : e));
      status(e.status === 401
        ? 'The token was refused: paste an admin token, or a marketer token from `fedmark token create --role marketer`.'
        : `Could not load: ${e.message}`, true);
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
