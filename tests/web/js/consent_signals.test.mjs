// The JavaScript consent rule (edge_sdk/web/src/consent_signals.js) against the vectors the IAB's own encoder
// made (tests/contract/make_tcf_vectors.mjs): every TC string decodes to the fields the Python decoder reads,
// every documented case gets the same decision from the TC string (decoded by @iabtechlabtcf/core) and from the
// TCData a CMP would hand the page, and every bad requirement is refused.
// Run: node --test tests/web/js/consent_signals.test.mjs (tests/web/test_node_consent_signals.py does).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { decide, decodeTCString, iabtcfMismatches, parseRequirement, signalsFromIabtcf, DECISION_REASONS } from '../../../edge_sdk/web/src/consent_signals.js';
import { tcfFromTCData } from '../../../edge_sdk/web/src/tcf.js';
import '../../../edge_sdk/web/src/node_tcf.js';
import { ERR_BAD_CONSENT_SIGNAL } from '../../../edge_sdk/web/src/codes.js';

const V = JSON.parse(readFileSync(new URL('../../contract/tcf_vectors.json', import.meta.url), 'utf8'));
const sorted = (s) => [...s].sort((a, b) => a - b);

test('every TC string decodes (IAB library) to the fields the vectors record', () => {
  for (const [name, s] of Object.entries(V.strings)) {
    const t = decodeTCString(s.tc_string);
    const d = s.decoded;
    assert.deepEqual(sorted(t.purposeConsents), d.purpose_consents, name);
    assert.deepEqual(sorted(t.purposeLegitimateInterests), d.purpose_legitimate_interests, name);
    assert.deepEqual(sorted(t.vendorConsents), d.vendor_consents, name);
    assert.deepEqual(sorted(t.vendorLegitimateInterests), d.vendor_legitimate_interests, name);
    assert.deepEqual(sorted(t.specialFeatureOptins), d.special_feature_optins, name);
    assert.deepEqual(Object.fromEntries(t.restrictions), d.restrictions, name);
    assert.equal(t.policyVersion, d.policy_version, name);
  }
});

test('TCData from the CMP carries the same signal as the decoded string', () => {
  for (const [name, s] of Object.entries(V.strings)) {
    const a = decodeTCString(s.tc_string);
    const b = tcfFromTCData(s.tcdata);
    for (const k of ['purposeConsents', 'purposeLegitimateInterests', 'vendorConsents', 'vendorLegitimateInterests', 'specialFeatureOptins']) {
      assert.deepEqual(sorted(b[k]), sorted(a[k]), `${name}.${k}`);
    }
    assert.deepEqual(Object.fromEntries(b.restrictions), Object.fromEntries(a.restrictions), name);
  }
});

test('malformed strings are refused with a clear error', () => {
  for (const [name, s] of Object.entries(V.malformed)) {
    assert.throws(() => decodeTCString(s), (e) => e.code === ERR_BAD_CONSENT_SIGNAL && /TC string/.test(e.message), name);
  }
});

test('every documented case gets the documented decision (string and TCData)', () => {
  const byString = {};
  for (const s of Object.values(V.strings)) byString[s.tc_string] = s.tcdata;
  for (const c of V.cases) {
    const r = V.requirements[c.requirement];
    const req = parseRequirement(r.consent_signals, r.purposes);
    assert.ok(DECISION_REASONS.includes(c.reason), c.reason);
    const got = decide(c.signals, req);
    assert.deepEqual(got, { allowed: c.reason.startsWith('allowed'), reason: c.reason }, `${c.requirement}: ${c.title}`);
    const tcData = byString[c.signals.tc_string];
    if (tcData) {
      const viaCmp = decide({ ...c.signals, tc_string: tcfFromTCData(tcData) }, req);
      assert.deepEqual(viaCmp, got, `${c.requirement}: ${c.title} (TCData)`);
    }
  }
});

test('a CMP that has not decided yet, or failed, gives no TCF signal', () => {
  const tcData = V.strings.accept_all.tcdata;
  assert.throws(() => tcfFromTCData({ ...tcData, eventStatus: 'cmpuishown' }), /no decision yet/);
  assert.throws(() => tcfFromTCData({ ...tcData, cmpStatus: 'error' }), /error/);
});

test('bad requirements are refused, naming the key', () => {
  for (const { requirement, names } of V.bad_requirements) {
    assert.throws(() => parseRequirement(requirement, ['p']), (e) => e.code === ERR_BAD_CONSENT_SIGNAL && e.message.includes(names),
      JSON.stringify(requirement));
  }
});

// In-app IABTCF_* keys: the same vectors as tests/contract/test_consent.py, so Node and Python decide alike.
const IN_APP = V.in_app;
const reqOf = (name) => parseRequirement(V.requirements[name].consent_signals, V.requirements[name].purposes);
const GRANTED_CM = { consent_mode: { ad_user_data: 'granted', ad_personalization: 'granted' } };

test('stored IABTCF_* keys agree with their string and decide as the string alone', () => {
  for (const [name, prefs] of Object.entries(IN_APP.stored)) {
    assert.deepEqual(iabtcfMismatches(prefs, decodeTCString(prefs.IABTCF_TCString)), [], name);
    const viaMap = signalsFromIabtcf(new Map(Object.entries(prefs)));  // SharedPreferences-like maps too
    for (const req of Object.keys(V.requirements)) {
      const alone = decide({ tc_string: prefs.IABTCF_TCString, gdpr_applies: 1, ...GRANTED_CM }, reqOf(req));
      assert.deepEqual(decide({ ...signalsFromIabtcf(prefs), ...GRANTED_CM }, reqOf(req)), alone, `${name} ${req}`);
      assert.deepEqual(decide({ ...viaMap, ...GRANTED_CM }, reqOf(req)), alone, `${name} ${req} (Map)`);
    }
  }
});

test('IABTCF_* keys that contradict the string are refused, naming the key', () => {
  for (const { title, prefs, names } of IN_APP.mismatches) {
    assert.throws(() => signalsFromIabtcf(prefs), (e) => e.code === ERR_BAD_CONSENT_SIGNAL && e.message.includes(names), title);
  }
});

test('in-app decisions as documented', () => {
  for (const { title, prefs, decisions } of IN_APP.cases) {
    const signals = signalsFromIabtcf(prefs);
    for (const [req, reason] of Object.entries(decisions)) {
      assert.deepEqual(decide(signals, reqOf(req)), { allowed: reason.startsWith('allowed'), reason }, `${title}: ${req}`);
    }
  }
});
