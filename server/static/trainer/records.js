// The customer records this page holds: bank-like rows generated in the browser.
//
// Why generated here: the page stands for a site that already has its
// visitors' records (on-site behaviour, CRM fields) in the browser.  A demo
// page must not ship real people's data, so it draws rows with the columns,
// vocabularies and rough marginals of the UCI Bank Marketing data the
// propensity model was built on, with a label that depends on the features
// the way the real one does (previous success, contact channel, season), so
// training has something to learn.  Each record carries its owner's consent:
// about one in eight consented to analytics only, so the SDK must leave it out.
// Rows are seeded by the device id: a device sees the same records on reload.

const JOBS = [['admin.', 11], ['blue-collar', 22], ['entrepreneur', 3], ['housemaid', 3], ['management', 21],
  ['retired', 5], ['self-employed', 3], ['services', 9], ['student', 2], ['technician', 17], ['unemployed', 3],
  ['unknown', 1]];
const MONTHS = [['jan', 3], ['feb', 6], ['mar', 1], ['apr', 6], ['may', 30], ['jun', 12], ['jul', 15], ['aug', 14],
  ['sep', 1], ['oct', 2], ['nov', 9], ['dec', 1]];
const MARITAL = [['married', 60], ['single', 28], ['divorced', 12]];
const EDUCATION = [['secondary', 51], ['tertiary', 29], ['primary', 15], ['unknown', 5]];
const CONTACT = [['cellular', 65], ['unknown', 29], ['telephone', 6]];
const PURPOSES_ALL = 'propensity_scoring, analytics';
const PURPOSES_ANALYTICS = 'analytics';

/** FNV-1a hash of a string: the seed of a device's records. */
export function seedOf(text) {
  let h = 0x811c9dc5;
  for (const ch of String(text)) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** mulberry32: a small seeded generator of uniforms in [0, 1). */
function uniform(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick(rand, weighted) {
  const total = weighted.reduce((s, [, w]) => s + w, 0);
  let r = rand() * total;
  for (const [value, w] of weighted) {
    r -= w;
    if (r < 0) return value;
  }
  return weighted[weighted.length - 1][0];
}

function gauss(rand) {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

/** One bank-like customer record (schema of the propensity model) with its consent. */
function customer(rand) {
  const job = pick(rand, JOBS);
  const age = Math.round(clamp(job === 'retired' ? 63 + 7 * gauss(rand) : job === 'student' ? 24 + 3 * gauss(rand)
    : 40 + 9.5 * gauss(rand), 18, 95));
  const previous = rand() < 0.18 ? 1 + Math.floor(-2.2 * Math.log(1 - rand())) : 0;
  const poutcome = previous === 0 ? 'unknown' : pick(rand, [['failure', 55], ['other', 20], ['success', 25]]);
  const r = {
    age,
    job,
    marital: age < 26 ? pick(rand, [['single', 85], ['married', 15]]) : pick(rand, MARITAL),
    education: pick(rand, EDUCATION),
    default: rand() < 0.02 ? 'yes' : 'no',
    balance: Math.round(Math.exp(6.4 + 1.4 * gauss(rand)) - 250),
    housing: rand() < (age > 60 ? 0.2 : 0.56) ? 'yes' : 'no',
    loan: rand() < 0.16 ? 'yes' : 'no',
    contact: pick(rand, CONTACT),
    day: 1 + Math.floor(rand() * 31),
    month: pick(rand, MONTHS),
    campaign: 1 + Math.floor(-1.8 * Math.log(1 - rand())),
    pdays: previous === 0 ? -1 : 20 + Math.floor(rand() * 360),
    previous,
    poutcome,
  };
  let z = -2.4;
  if (poutcome === 'success') z += 2.3;
  if (['mar', 'sep', 'oct', 'dec'].includes(r.month)) z += 1.4;
  if (r.month === 'may') z -= 0.4;
  if (r.contact === 'unknown') z -= 1.0;
  if (['student', 'retired'].includes(job)) z += 0.7;
  if (r.housing === 'yes') z -= 0.6;
  if (r.loan === 'yes') z -= 0.4;
  z -= 0.12 * (r.campaign - 1);
  r.y = rand() < 1 / (1 + Math.exp(-z)) ? 'yes' : 'no';
  r.consent = rand() < 0.125 ? PURPOSES_ANALYTICS : PURPOSES_ALL;
  return r;
}

/** `n` records for the device `deviceId` (the same id always gives the same records). */
export function makeRecords(n, deviceId) {
  if (!(Number.isInteger(n) && n >= 1 && n <= 50000)) throw new RangeError(`record count must be an integer in [1, 50000], got ${n}`);
  const rand = uniform(seedOf(deviceId));
  return Array.from({ length: n }, () => customer(rand));
}

/** Counts the page shows next to the records (consent is the SDK's rule: the purpose must be listed). */
export function summarize(records, purpose = 'propensity_scoring') {
  const consented = records.filter((r) => r.consent.split(',').map((p) => p.trim()).includes(purpose));
  return {
    total: records.length,
    consented: consented.length,
    excluded: records.length - consented.length,
    positives: consented.filter((r) => r.y === 'yes').length,
  };
}
