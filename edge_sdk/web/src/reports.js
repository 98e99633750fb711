// What the SDK reports besides an update (as edge_sdk/reports.py and edge_sdk/metrics.py): federated-evaluation
// bodies (count, loss sum, the per-label score histogram) and audience-segment counts — aggregates only, never a
// record.  The histogram is fedmark.metrics.ScoreHistogram's: 100 bins over [0, 1], split by label, which add up
// across devices to fleet-wide AUC and calibration.

export const HIST_BINS = 100;
/** Segment name and lowest score, highest first (the Python SDK's DEFAULT_SEGMENT_CUTS). */
export const DEFAULT_SEGMENT_CUTS = Object.freeze([['high_propensity', 0.5], ['medium_propensity', 0.2], ['low_propensity', 0.0]]);

/** Mean binary cross-entropy of probabilities `p` for 0/1 labels `y` (NaN when empty); as edge_sdk.metrics.log_loss. */
export function logLoss(y, p, eps = 1e-7) {
  if (!y.length) return NaN;
  let s = 0;
  for (let i = 0; i < y.length; i += 1) {
    const q = Math.min(Math.max(Number(p[i]), eps), 1 - eps);
    s += Number(y[i]) * Math.log(q) + (1 - Number(y[i])) * Math.log1p(-q);
  }
  return -s / y.length;
}

/** The score histogram of labels `y` and scores `p` (fedmark.metrics.ScoreHistogram.of). */
export function scoreHistogram(y, p, bins = HIST_BINS) {
  const pos = new Array(bins).fill(0);
  const neg = new Array(bins).fill(0);
  let sumPos = 0;
  let sumNeg = 0;
  for (let i = 0; i < y.length; i += 1) {
    const s = Math.min(Math.max(Number(p[i]), 0), 1);
    const b = Math.min(Math.trunc(s * bins), bins - 1);
    if (Number(y[i]) > 0.5) { pos[b] += 1; sumPos += s; } else { neg[b] += 1; sumNeg += s; }
  }
  return { pos, neg, score_sum_pos: sumPos, score_sum_neg: sumNeg };
}

/** One version's federated-evaluation report (POST …/reports); null when no consented record was evaluated. */
export function evaluationEntry(version, y, p) {
  const histogram = scoreHistogram(y, p);
  const count = y.length;
  if (count === 0) return null;
  const loss = logLoss(y, p);
  return { version, segment: 'all', kind: 'binary', count, loss_sum: Number.isFinite(loss) ? loss * count : 0.0, histogram };
}

/** How many scored records fall in each segment (`cuts`: name and lowest score, highest first); NaN counts nowhere. */
export function segmentCounts(scores, cuts = DEFAULT_SEGMENT_CUTS) {
  const counts = Object.fromEntries(cuts.map(([name]) => [name, 0]));
  for (const sc of scores) {
    if (!Number.isFinite(sc)) continue;
    const hit = cuts.find(([, low]) => sc >= low);
    if (hit) counts[hit[0]] += 1;
  }
  return counts;
}

/** Top-k item indices by score, skipping `exclude` (fedmark.metrics.top_k: ties keep the lower index first). */
export function topK(scores, k, exclude = []) {
  const ex = new Set(exclude);
  const idx = [];
  for (let i = 0; i < scores.length; i += 1) if (!ex.has(i) && Number.isFinite(scores[i])) idx.push(i);
  idx.sort((a, b) => (scores[b] - scores[a]) || (a - b));
  return idx.slice(0, k);
}
