// Drawing the trainer page: records, the sync → train → upload steps, the update and the server's answer.
//
// Kept apart from app.js (the flow) so the flow reads as the SDK calls it makes.
// Every value goes in through textContent: nothing from the server or the
// records is ever parsed as HTML.

const $ = (id) => document.getElementById(id);
const STEPS = ['task', 'sync', 'train', 'upload'];
const SHOWN_ROWS = 8;
const COLUMNS = [['age', 'num'], ['job', ''], ['balance', 'num'], ['housing', ''], ['contact', ''], ['month', ''],
  ['poutcome', ''], ['y', ''], ['consent', 'consent']];

function el(tag, text = '', cls = '') {
  const e = document.createElement(tag);
  if (text !== '') e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function chip(text, kind = '') {
  return el('span', text, `chip ${kind}`.trim());
}

/** The page-wide state (loading / ready / running / done / error) and its one-line message. */
export function setState(state, message = '') {
  document.body.dataset.state = state;
  $('message').textContent = message;
}

export function setRuntime(text, ok) {
  const r = $('runtime');
  r.textContent = text;
  r.classList.toggle('no', !ok);
}

export function renderConditions(c) {
  const box = $('conditions');
  box.replaceChildren(
    chip(c.charging ? 'charging' : 'on battery', c.charging ? 'ok' : 'warn'),
    chip(`battery ${Math.round(c.battery * 100)}%`, c.battery >= 0.5 ? 'ok' : 'warn'),
    chip(c.unmetered ? 'unmetered network' : 'metered network', c.unmetered ? 'ok' : 'warn'),
    chip(c.idle ? 'page visible, user started' : 'busy', c.idle ? 'ok' : 'warn'),
  );
}

export function renderRecords(records, summary) {
  const stats = [[summary.total, 'records in the page'], [summary.consented, 'consented to propensity_scoring'],
    [summary.excluded, 'excluded (no consent)'], [summary.positives, 'subscribed (y = yes), consented']];
  $('record-stats').replaceChildren(...stats.map(([v, label]) => {
    const s = el('div', '', 'stat');
    s.append(el('b', String(v)), el('span', label));
    return s;
  }));
  const table = $('records-table');
  const head = el('tr');
  for (const [name, cls] of COLUMNS) head.append(el('th', name, cls === 'num' ? 'num' : ''));
  const rows = records.slice(0, SHOWN_ROWS).map((r) => {
    const tr = el('tr');
    const ok = r.consent.split(',').map((p) => p.trim()).includes('propensity_scoring');
    if (!ok) tr.className = 'excluded';
    for (const [name, cls] of COLUMNS) {
      if (cls === 'consent') {
        const td = el('td', '', 'consent');
        td.append(chip(ok ? 'consented' : 'analytics only', ok ? 'ok' : 'no'));
        tr.append(td);
      } else {
        tr.append(el('td', String(r[name]), cls));
      }
    }
    return tr;
  });
  const more = el('tr', '', 'more');
  const td = el('td', `… and ${Math.max(0, records.length - SHOWN_ROWS)} more records, held only in this page`);
  td.colSpan = COLUMNS.length;
  more.append(td);
  table.replaceChildren(head, ...rows, ...(records.length > SHOWN_ROWS ? [more] : []));
}

/** Mark `step` active (steps before it done); `failed` marks it as where the run stopped. */
export function setStep(step, { failed = false, allDone = false } = {}) {
  const at = STEPS.indexOf(step);
  for (const li of $('steps').children) {
    const i = STEPS.indexOf(li.dataset.step);
    li.className = allDone || i < at ? 'done' : i === at ? (failed ? 'failed' : 'active') : '';
  }
}

export function resetProgress() {
  setStep('');
  $('epoch-table').replaceChildren();
  setEpoch(0, 0, NaN);
  for (const id of ['update-kv', 'answer-kv']) $(id).replaceChildren(el('dt', 'waiting'), el('dd', '–'));
  setRound(null);
}

/** The epoch progress bar (one ONNX graph call trains a whole epoch, so this is the finest step). */
export function setEpoch(epoch, epochs, loss, examples = null) {
  const pct = epochs > 0 ? Math.round((100 * epoch) / epochs) : 0;
  $('epoch-fill').style.width = `${pct}%`;
  $('epoch-bar').setAttribute('aria-valuenow', String(pct));
  $('epoch-label').textContent = epochs > 0 ? `epoch ${epoch} of ${epochs}${examples ? ` · ${examples} records` : ''}`
    : 'epoch 0 of –';
  $('loss-label').textContent = Number.isFinite(loss) ? `loss ${loss.toFixed(4)}` : '';
}

export function addEpochRow(e) {
  const table = $('epoch-table');
  if (!table.rows.length) {
    const head = el('tr');
    for (const [h, c] of [['epoch', ''], ['mean loss', 'num'], ['time (ms)', 'num']]) head.append(el('th', h, c));
    table.append(head);
  }
  const tr = el('tr');
  tr.append(el('td', `${e.epoch} / ${e.epochs}`), el('td', e.loss.toFixed(5), 'num'), el('td', e.ms.toFixed(1), 'num'));
  table.append(tr);
}

function kv(id, pairs) {
  const nodes = [];
  for (const [k, v] of pairs) {
    const dd = el('dd');
    if (v instanceof Node) dd.append(v); else dd.textContent = String(v);
    nodes.push(el('dt', k), dd);
  }
  $(id).replaceChildren(...nodes);
}

export function renderUpdate(u) {
  kv('update-kv', [
    ['L2 norm before clipping', u.norm.toFixed(6)],
    ['clip norm (server)', String(u.clipNorm)],
    ['clipped', chip(u.withinClip ? 'no — within the clip norm' : `yes — scaled to ${u.clipNorm}`,
      u.withinClip ? 'ok' : 'warn')],
    ['encoding', `${u.encoding}, ${u.bytes.toLocaleString('en')} bytes`],
    ...(u.examples !== undefined ? [['records used', String(u.examples)]] : []),
    ...(u.loss !== undefined ? [['final mean loss', u.loss.toFixed(5)]] : []),
  ]);
}

export function renderAnswer(report, round) {
  const ok = report.status === 'accepted' || report.status === 'duplicate';
  kv('answer-kv', [
    ['status', chip(report.status, ok ? 'ok' : 'warn')],
    ['HTTP', report.httpStatus ?? '–'],
    ['update id', report.updateId ?? '–'],
    ['round', report.roundId],
    ['model version', `${report.model} v${report.version}`],
  ]);
  setRound(round);
}

export function setRound(round) {
  if (!round) {
    $('round-fill').style.width = '0%';
    $('round-label').textContent = 'round progress';
    $('round-state').textContent = '';
    return;
  }
  const pct = round.goal > 0 ? Math.min(100, Math.round((100 * round.accepted) / round.goal)) : 0;
  $('round-fill').style.width = `${pct}%`;
  $('round-label').textContent = `${round.accepted} of ${round.goal} updates accepted in this round`;
  $('round-state').textContent = round.result_version ? `${round.state} → v${round.result_version}` : round.state;
}

export function setBusy(busy) {
  $('start').disabled = busy;
  $('start').textContent = busy ? 'Training…' : 'Train and contribute';
}

/** The consent signals the SDK read from the page for this run (CMP, GPC, Consent Mode). */
export function renderSignals(signals) {
  const tcf = signals.tc_string;
  const rows = [
    ['TCF (__tcfapi)', tcf === undefined || tcf === null ? 'no decision from the CMP'
      : tcf.purposeConsents ? `purposes consented: ${[...tcf.purposeConsents].sort((a, b) => a - b).join(', ') || 'none'}`
        : 'unreadable'],
    ['Global Privacy Control', signals.gpc === true ? 'opt-out' : signals.gpc === false ? 'no opt-out' : 'not sent'],
    ['Consent Mode', signals.consent_mode ? JSON.stringify(signals.consent_mode) : 'not set on this page'],
  ];
  const kv = document.getElementById('signals-kv');
  if (!kv) return;
  kv.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    return [dt, dd];
  }));
}
