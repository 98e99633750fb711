// Write TCF v2.2 test vectors made by the IAB Tech Lab's own encoder (@iabtechlabtcf/core).
//
// Why the IAB library and not our decoder: fedmark's Python decoder
// (fedmark/contract/consent.py) is hand-written (the contract is stdlib + numpy
// only), so it is checked against strings the reference implementation
// encodes, with known purposes, vendors, special features and publisher
// restrictions.  The same file carries the documented decision table (signals +
// requirement -> reason) that the Python rule, the Node SDK and the browser
// must all reproduce, and the TCData object a real CMP's __tcfapi would hand a
// page for each string (what the browser SDK reads).
//
// Usage: node tests/contract/make_tcf_vectors.mjs [OUT.json]   (default: tests/contract/tcf_vectors.json)

import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const core = await import(new URL('../../edge_sdk/web/node_modules/@iabtechlabtcf/core/lib/mjs/index.js', import.meta.url));
const { GVL, TCModel, TCString, PurposeRestriction, RestrictionType } = core;

const DEPLOYMENT_VENDOR = 1234;
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const named = (ids, what) => Object.fromEntries(ids.map((id) => [id, { id, name: `${what} ${id}`, description: '', illustrations: [] }]));

// A small, fixed Global Vendor List (the real one is fetched by CMPs; the encoder only needs its declarations).
function vendor(id, purposes, legIntPurposes, flexiblePurposes, specialFeatures = []) {
  return { id, name: `vendor ${id}`, purposes, legIntPurposes, flexiblePurposes, specialPurposes: [1], features: [],
    specialFeatures, policyUrl: 'https://vendor.example/privacy', cookieMaxAgeSeconds: 86400, usesCookies: true,
    cookieRefresh: false, usesNonCookieAccess: false, dataRetention: { stdRetention: 30, purposes: {}, specialPurposes: {} },
    urls: [], dataDeclaration: [] };
}
const VENDOR_LIST = {
  gvlSpecificationVersion: 3, vendorListVersion: 150, tcfPolicyVersion: 4, lastUpdated: '2026-11-01T00:00:00Z',
  purposes: named(range(1, 11), 'purpose'), specialPurposes: named(range(1, 3), 'special purpose'),
  features: named(range(1, 3), 'feature'), specialFeatures: named(range(1, 2), 'special feature'),
  stacks: {}, dataCategories: {},
  vendors: {
    [DEPLOYMENT_VENDOR]: vendor(DEPLOYMENT_VENDOR, [1, 3, 4, 7, 9], [2, 10], [2, 7, 9, 10], [1, 2]),
    755: vendor(755, [1, 2, 3, 4], [7, 9, 10], []),
    20000: vendor(20000, [1], [], []),
  },
};

const FIXED_DATE = new Date('2026-11-20T00:00:00Z');

function model({ purposeConsents = [], purposeLI = [], vendorConsents = [], vendorLI = [], specialFeatures = [],
  restrictions = [] } = {}) {
  const gvl = new GVL(structuredClone(VENDOR_LIST));
  const m = new TCModel(gvl);
  m.cmpId = 300;
  m.cmpVersion = 7;
  m.consentScreen = 2;
  m.consentLanguage = 'EN';
  m.publisherCountryCode = 'DE';
  m.isServiceSpecific = true;
  m.created = FIXED_DATE;
  m.lastUpdated = FIXED_DATE;
  m.purposeConsents.set(purposeConsents);
  m.purposeLegitimateInterests.set(purposeLI);
  m.vendorConsents.set(vendorConsents);
  m.vendorLegitimateInterests.set(vendorLI);
  m.specialFeatureOptins.set(specialFeatures);
  for (const [purpose, type, vendorId] of restrictions) {
    m.publisherRestrictions.add(vendorId, new PurposeRestriction(purpose, type));
  }
  return m;
}

const ACCEPT = { purposeConsents: range(1, 11), purposeLI: [2, 7, 8, 9, 10, 11],
  vendorConsents: [DEPLOYMENT_VENDOR, 755], vendorLI: [DEPLOYMENT_VENDOR, 755], specialFeatures: [1, 2] };
const STRINGS = {
  accept_all: ACCEPT,
  reject_all: {},
  purposes_without_our_vendor: { purposeConsents: range(1, 11), vendorConsents: [755] },
  legitimate_interest_only: { purposeConsents: [1], purposeLI: [2, 7, 9, 10], vendorConsents: [], vendorLI: [DEPLOYMENT_VENDOR] },
  consent1_li10: { purposeConsents: [1], purposeLI: [10], vendorConsents: [DEPLOYMENT_VENDOR], vendorLI: [DEPLOYMENT_VENDOR] },
  accept_without_special_features: { ...ACCEPT, specialFeatures: [] },
  restricted_purpose3_not_allowed: { ...ACCEPT, restrictions: [[3, RestrictionType.NOT_ALLOWED, DEPLOYMENT_VENDOR]] },
  restricted_purpose10_require_consent: { purposeConsents: [1], purposeLI: [10], vendorConsents: [DEPLOYMENT_VENDOR],
    vendorLI: [DEPLOYMENT_VENDOR], restrictions: [[10, RestrictionType.REQUIRE_CONSENT, DEPLOYMENT_VENDOR]] },
  restricted_purpose7_require_li: { ...ACCEPT, restrictions: [[7, RestrictionType.REQUIRE_LI, DEPLOYMENT_VENDOR]] },
  high_vendor_id: { purposeConsents: [1], vendorConsents: [20000, DEPLOYMENT_VENDOR] },
};

/** The decoded fields, in fedmark.contract.consent.TcfConsent.to_json()'s shape, as the IAB library reads them. */
function decoded(tcString) {
  const m = TCString.decode(tcString);
  const ids = (v) => [...v.values()].sort((a, b) => a - b);
  const restrictions = {};
  for (const vendorId of m.publisherRestrictions.getVendors()) {
    for (const r of m.publisherRestrictions.getRestrictions(vendorId)) restrictions[`${r.purposeId}:${vendorId}`] = r.restrictionType;
  }
  const sorted = Object.fromEntries(Object.entries(restrictions).sort(([a], [b]) => {
    const [pa, va] = a.split(':').map(Number);
    const [pb, vb] = b.split(':').map(Number);
    return pa - pb || va - vb;
  }));
  return {
    version: Number(m.version), created: Math.round(m.created.getTime() / 100),
    last_updated: Math.round(m.lastUpdated.getTime() / 100), cmp_id: Number(m.cmpId), cmp_version: Number(m.cmpVersion),
    consent_screen: Number(m.consentScreen), consent_language: m.consentLanguage,
    vendor_list_version: Number(m.vendorListVersion), policy_version: Number(m.policyVersion),
    is_service_specific: m.isServiceSpecific, use_non_standard_texts: m.useNonStandardTexts,
    special_feature_optins: ids(m.specialFeatureOptins), purpose_consents: ids(m.purposeConsents),
    purpose_legitimate_interests: ids(m.purposeLegitimateInterests), purpose_one_treatment: m.purposeOneTreatment,
    publisher_country_code: m.publisherCountryCode, vendor_consents: ids(m.vendorConsents),
    vendor_legitimate_interests: ids(m.vendorLegitimateInterests), restrictions: sorted,
  };
}

/** The TCData a CMP's __tcfapi('addEventListener', 2, cb) hands the page for this string (TCF v2.2 CMP API). */
function tcData(tcString, { gdprApplies = true, eventStatus = 'useractioncomplete' } = {}) {
  const m = TCString.decode(tcString);
  const obj = (v, max) => Object.fromEntries(range(1, max).map((i) => [String(i), v.has(i)]));
  const vendors = (v) => Object.fromEntries([...v.values()].map((i) => [String(i), true]));
  const restrictions = {};
  for (const vendorId of m.publisherRestrictions.getVendors()) {
    for (const r of m.publisherRestrictions.getRestrictions(vendorId)) {
      (restrictions[String(r.purposeId)] ??= {})[String(vendorId)] = r.restrictionType;
    }
  }
  return { tcString, tcfPolicyVersion: Number(m.policyVersion), cmpId: Number(m.cmpId), cmpVersion: Number(m.cmpVersion),
    gdprApplies, eventStatus, cmpStatus: 'loaded', listenerId: 1, isServiceSpecific: m.isServiceSpecific,
    useNonStandardTexts: m.useNonStandardTexts, publisherCC: m.publisherCountryCode, purposeOneTreatment: m.purposeOneTreatment,
    purpose: { consents: obj(m.purposeConsents, 11), legitimateInterests: obj(m.purposeLegitimateInterests, 11) },
    vendor: { consents: vendors(m.vendorConsents), legitimateInterests: vendors(m.vendorLegitimateInterests) },
    specialFeatureOptins: obj(m.specialFeatureOptins, 2),
    publisher: { consents: {}, legitimateInterests: {}, customPurpose: { consents: {}, legitimateInterests: {} }, restrictions } };
}

const strings = {};
for (const [name, spec] of Object.entries(STRINGS)) {
  const encoded = TCString.encode(model(spec));
  strings[name] = { tc_string: encoded, made_with: spec, decoded: decoded(encoded), tcdata: tcData(encoded) };
}
const ACCEPTED = strings.accept_all.tc_string;
const MALFORMED = {
  not_base64url: 'this is not a TC string!',
  truncated: ACCEPTED.slice(0, 20),
  version_1: 'BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA',
  bad_restriction_type: null, // filled below
  empty_segment: `${ACCEPTED}.`,
};
{ // the restricted string with its one restriction's type set to the undefined value 3
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const bitsOf = (seg) => [...seg].map((c) => alphabet.indexOf(c).toString(2).padStart(6, '0')).join('');
  const restricted = bitsOf(strings.restricted_purpose3_not_allowed.tc_string.split('.')[0]);
  const plain = bitsOf(strings.accept_all.tc_string.split('.')[0]);
  // Both encode the same model up to NumPubRestrictions (12 bits: 0 vs 1), so the first differing bit is its
  // last bit; PurposeId (6 bits) and RestrictionType (2 bits) follow.
  let d = 0;
  while (restricted[d] === plain[d]) d += 1;
  const typeAt = d + 1 + 6;
  const bits = `${restricted.slice(0, typeAt)}11${restricted.slice(typeAt + 2)}`;
  MALFORMED.bad_restriction_type = bits.match(/.{1,6}/g).map((b) => alphabet[parseInt(b.padEnd(6, '0'), 2)]).join('');
}

// The documented decisions (docs/CONSENT.md is generated from this table): requirement + signals -> reason.
const REQ = {
  personalised_ads: { purposes: ['propensity_scoring'], consent_signals: { tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [1, 3, 4] },
    consent_mode: ['ad_user_data', 'ad_personalization'], gpc: true } },
  product_improvement: { purposes: ['product_improvement'], consent_signals: { tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [1], legitimate_interest: [10] } } },
  measurement_li: { purposes: ['measurement'], consent_signals: { tcf: { vendor_id: DEPLOYMENT_VENDOR, legitimate_interest: [7] } } },
  measurement_consent: { purposes: ['measurement'], consent_signals: { tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [7] } } },
  precise_geo: { purposes: ['geo'], consent_signals: { tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [1], special_features: [1] } } },
  high_vendor: { purposes: ['x'], consent_signals: { tcf: { vendor_id: 20000, consent: [1] } } },
  tcf_outside_gdpr_allowed: { purposes: ['x'], consent_signals: { tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [1], outside_gdpr: 'allow' } } },
  analytics_consent_mode: { purposes: ['analytics'], consent_signals: { consent_mode: ['analytics_storage'] } },
  simple_purposes: { purposes: ['marketing'], consent_signals: null },
  simple_purposes_and_gpc: { purposes: ['marketing'], consent_signals: { gpc: true, simple_purposes: true } },
};
const GRANTED = { ad_user_data: 'granted', ad_personalization: 'granted' };
const tc = (name) => strings[name].tc_string;
const CASES = [
  ['personalised_ads', 'everything granted, no GPC', { tc_string: tc('accept_all'), consent_mode: GRANTED }, 'allowed'],
  ['personalised_ads', 'GPC false', { tc_string: tc('accept_all'), consent_mode: GRANTED, gpc: false }, 'allowed'],
  ['personalised_ads', 'GPC opt-out (navigator.globalPrivacyControl)', { tc_string: tc('accept_all'), consent_mode: GRANTED, gpc: true }, 'gpc_opt_out'],
  ['personalised_ads', 'GPC opt-out (Sec-GPC: 1)', { tc_string: tc('accept_all'), consent_mode: GRANTED, gpc: '1' }, 'gpc_opt_out'],
  ['personalised_ads', 'GPC unreadable', { tc_string: tc('accept_all'), consent_mode: GRANTED, gpc: 'maybe' }, 'gpc_unreadable'],
  ['personalised_ads', 'TCF: all rejected', { tc_string: tc('reject_all'), consent_mode: GRANTED }, 'tcf_purpose_denied'],
  ['personalised_ads', 'TCF: purposes granted, our vendor not', { tc_string: tc('purposes_without_our_vendor'), consent_mode: GRANTED }, 'tcf_vendor_denied'],
  ['personalised_ads', 'TCF: publisher forbids purpose 3 for our vendor', { tc_string: tc('restricted_purpose3_not_allowed'), consent_mode: GRANTED }, 'tcf_restricted'],
  ['personalised_ads', 'no TC string', { consent_mode: GRANTED }, 'tcf_missing'],
  ['personalised_ads', 'no TC string, gdprApplies false (default outside_gdpr deny)', { consent_mode: GRANTED, gdpr_applies: false }, 'tcf_missing'],
  ...Object.keys(MALFORMED).map((k) => ['personalised_ads', `malformed TC string: ${k}`, { tc_string: MALFORMED[k], consent_mode: GRANTED }, 'tcf_unreadable']),
  ['personalised_ads', 'Consent Mode: ad_personalization denied', { tc_string: tc('accept_all'), consent_mode: { ad_user_data: 'granted', ad_personalization: 'denied' } }, 'consent_mode_denied'],
  ['personalised_ads', 'Consent Mode: absent', { tc_string: tc('accept_all') }, 'consent_mode_missing'],
  ['personalised_ads', 'Consent Mode: ad_personalization not set', { tc_string: tc('accept_all'), consent_mode: { ad_user_data: 'granted' } }, 'consent_mode_missing'],
  ['personalised_ads', 'Consent Mode: not JSON', { tc_string: tc('accept_all'), consent_mode: 'granted' }, 'consent_mode_unreadable'],
  ['personalised_ads', 'Consent Mode: value not granted/denied', { tc_string: tc('accept_all'), consent_mode: { ad_user_data: 'yes', ad_personalization: 'granted' } }, 'consent_mode_unreadable'],
  ['personalised_ads', 'Consent Mode as JSON text (a table cell)', { tc_string: tc('accept_all'), consent_mode: JSON.stringify(GRANTED) }, 'allowed'],
  ['product_improvement', 'purpose 10 by consent', { tc_string: tc('accept_all') }, 'allowed'],
  ['product_improvement', 'purpose 10 by legitimate interest', { tc_string: tc('consent1_li10') }, 'allowed_legitimate_interest'],
  ['product_improvement', 'purpose 1 consented, our vendor has no consent', { tc_string: tc('legitimate_interest_only') }, 'tcf_vendor_denied'],
  ['product_improvement', 'all rejected', { tc_string: tc('reject_all') }, 'tcf_purpose_denied'],
  ['product_improvement', 'purpose 10 by LI, but the publisher requires consent for it', { tc_string: tc('restricted_purpose10_require_consent') }, 'tcf_restricted'],
  ['measurement_li', 'purpose 7 by legitimate interest', { tc_string: tc('legitimate_interest_only') }, 'allowed_legitimate_interest'],
  ['measurement_li', 'publisher requires LI for purpose 7', { tc_string: tc('restricted_purpose7_require_li') }, 'allowed_legitimate_interest'],
  ['measurement_consent', 'publisher requires LI for purpose 7, model needs consent', { tc_string: tc('restricted_purpose7_require_li') }, 'tcf_restricted'],
  ['measurement_consent', 'purpose 7 consented', { tc_string: tc('accept_all') }, 'allowed'],
  ['precise_geo', 'special feature 1 opted in', { tc_string: tc('accept_all') }, 'allowed'],
  ['precise_geo', 'special feature 1 not opted in', { tc_string: tc('accept_without_special_features') }, 'tcf_special_feature_denied'],
  ['high_vendor', 'vendor 20000 consented (range-encoded vendors)', { tc_string: tc('high_vendor_id') }, 'allowed'],
  ['tcf_outside_gdpr_allowed', 'gdprApplies false, no TC string', { gdpr_applies: false }, 'allowed'],
  ['tcf_outside_gdpr_allowed', 'gdprApplies true, no TC string', { gdpr_applies: true }, 'tcf_missing'],
  ['tcf_outside_gdpr_allowed', 'gdprApplies unknown, no TC string', {}, 'tcf_missing'],
  ['analytics_consent_mode', 'analytics_storage granted', { consent_mode: { analytics_storage: 'granted' } }, 'allowed'],
  ['analytics_consent_mode', 'analytics_storage denied', { consent_mode: { analytics_storage: 'denied' } }, 'consent_mode_denied'],
  ['simple_purposes', 'consent field names the purpose', { consent: 'marketing,analytics' }, 'allowed'],
  ['simple_purposes', 'consent field names another purpose', { consent: 'analytics' }, 'purpose_not_consented'],
  ['simple_purposes', 'no consent field', {}, 'purpose_not_consented'],
  ['simple_purposes', 'a TC string alone does not satisfy the simple form', { tc_string: tc('accept_all') }, 'purpose_not_consented'],
  ['simple_purposes_and_gpc', 'purpose consented, GPC opt-out', { consent: ['Marketing'], gpc: true }, 'gpc_opt_out'],
  ['simple_purposes_and_gpc', 'purpose consented, no GPC', { consent: ['Marketing'] }, 'allowed'],
];

// Requirements every side must refuse (code bad_consent_signal), with the key the message must name.
const BAD_REQUIREMENTS = [
  [{ tcf: { consent: [1] } }, 'vendor_id'],
  [{ tcf: { vendor_id: 0, consent: [1] } }, 'vendor_id'],
  [{ tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [12] } }, 'consent'],
  [{ tcf: { vendor_id: DEPLOYMENT_VENDOR, legitimate_interest: [3] } }, 'legitimate_interest'],
  [{ tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [2], legitimate_interest: [2] } }, 'both'],
  [{ tcf: { vendor_id: DEPLOYMENT_VENDOR } }, 'names no purpose'],
  [{ tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [1], outside_gdpr: 'maybe' } }, 'outside_gdpr'],
  [{ tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: ['1'] } }, 'consent'],
  [{ tcf: { vendor_id: DEPLOYMENT_VENDOR, consent: [1], extra: 1 } }, 'extra'],
  [{ consent_mode: ['ad_storage', 'ads'] }, 'consent_mode'],
  [{ consent_mode: [] }, 'consent_mode'],
  [{ gpc: 'yes' }, 'gpc'],
  [{}, 'requires nothing'],
  [{ purposes: ['x'] }, 'unknown key'],
  [['tcf'], 'must be an object'],
];

// In-app: the IABTCF_* key/values a CMP SDK stores beside the string (IAB Tech Lab, CMP API v2, "In-App Details":
// binary strings where position n is id n+1; IABTCF_PublisherRestrictions{purpose}: a type per vendor, '_' none).
// Built here from the IAB library's own TCModel, so the SDKs' readers are checked against an independent writer.
function iabtcfKeys(tcString, { gdprApplies = 1 } = {}) {
  const m = TCString.decode(tcString);
  const bits = (vector, max) => range(1, max).map((i) => (vector.has(i) ? '1' : '0')).join('');
  const maxVendor = (vector) => Math.max(0, ...vector.values());
  const keys = {
    IABTCF_CmpSdkID: Number(m.cmpId), IABTCF_CmpSdkVersion: Number(m.cmpVersion), IABTCF_PolicyVersion: Number(m.policyVersion),
    IABTCF_gdprApplies: gdprApplies, IABTCF_PublisherCC: m.publisherCountryCode,
    IABTCF_PurposeOneTreatment: m.purposeOneTreatment ? 1 : 0, IABTCF_UseNonStandardStacks: 0, IABTCF_TCString: tcString,
    IABTCF_PurposeConsents: bits(m.purposeConsents, 11), IABTCF_PurposeLegitimateInterests: bits(m.purposeLegitimateInterests, 11),
    IABTCF_VendorConsents: bits(m.vendorConsents, maxVendor(m.vendorConsents)),
    IABTCF_VendorLegitimateInterests: bits(m.vendorLegitimateInterests, maxVendor(m.vendorLegitimateInterests)),
    IABTCF_SpecialFeaturesOptIns: bits(m.specialFeatureOptins, 2),
    IABTCF_PublisherConsent: '', IABTCF_PublisherLegitimateInterests: '',
  };
  const byPurpose = {};
  for (const vendorId of m.publisherRestrictions.getVendors()) {
    for (const r of m.publisherRestrictions.getRestrictions(vendorId)) (byPurpose[r.purposeId] ??= {})[vendorId] = r.restrictionType;
  }
  for (const [purpose, vendors] of Object.entries(byPurpose)) {
    const top = Math.max(...Object.keys(vendors).map(Number));
    keys[`IABTCF_PublisherRestrictions${purpose}`] = range(1, top).map((v) => (v in vendors ? String(vendors[v]) : '_')).join('');
  }
  return keys;
}
const flip = (binary, id) => {
  const padded = binary.padEnd(id, '0');
  return `${padded.slice(0, id - 1)}${padded[id - 1] === '1' ? '0' : '1'}${padded.slice(id)}`;
};
const keysOf = (name, opts) => iabtcfKeys(strings[name].tc_string, opts);
const withoutString = (keys) => Object.fromEntries(Object.entries(keys).filter(([k]) => k !== 'IABTCF_TCString'));
const IN_APP = {
  // every string, stored by a CMP with all its pre-parsed keys: the same decisions as the string alone
  stored: Object.fromEntries(Object.keys(strings).map((name) => [name, keysOf(name)])),
  // the pre-parsed keys contradict the string: refused with an error naming the key, nothing trains
  mismatches: [
    ['purpose 3 consent cleared in the keys', { ...keysOf('accept_all'), IABTCF_PurposeConsents: flip(keysOf('accept_all').IABTCF_PurposeConsents, 3) }, 'IABTCF_PurposeConsents'],
    ['our vendor\'s consent set in the keys only', { ...keysOf('purposes_without_our_vendor'), IABTCF_VendorConsents: flip(keysOf('purposes_without_our_vendor').IABTCF_VendorConsents, DEPLOYMENT_VENDOR) }, 'IABTCF_VendorConsents'],
    ['legitimate interest for purpose 8 in the keys only', { ...keysOf('consent1_li10'), IABTCF_PurposeLegitimateInterests: flip(keysOf('consent1_li10').IABTCF_PurposeLegitimateInterests, 8) }, 'IABTCF_PurposeLegitimateInterests'],
    ['vendor legitimate interest cleared in the keys', { ...keysOf('consent1_li10'), IABTCF_VendorLegitimateInterests: flip(keysOf('consent1_li10').IABTCF_VendorLegitimateInterests, DEPLOYMENT_VENDOR) }, 'IABTCF_VendorLegitimateInterests'],
    ['special feature 1 opt-in in the keys only', { ...keysOf('accept_without_special_features'), IABTCF_SpecialFeaturesOptIns: '10' }, 'IABTCF_SpecialFeaturesOptIns'],
    ['publisher restriction missing from the keys', { ...keysOf('restricted_purpose3_not_allowed'), IABTCF_PublisherRestrictions3: '_'.repeat(DEPLOYMENT_VENDOR) }, 'IABTCF_PublisherRestrictions3'],
    ['publisher restriction in the keys only', { ...keysOf('accept_all'), IABTCF_PublisherRestrictions4: `${'_'.repeat(DEPLOYMENT_VENDOR - 1)}0` }, 'IABTCF_PublisherRestrictions4'],
    ['policy version of another TCF version', { ...keysOf('accept_all'), IABTCF_PolicyVersion: 2 }, 'IABTCF_PolicyVersion'],
    ['publisher country differs', { ...keysOf('accept_all'), IABTCF_PublisherCC: 'FR' }, 'IABTCF_PublisherCC'],
    ['the string was renewed, the keys were not', { ...keysOf('reject_all'), IABTCF_TCString: strings.accept_all.tc_string }, 'IABTCF_PurposeConsents'],
    ['a key that is not a binary string', { ...keysOf('accept_all'), IABTCF_PurposeConsents: '1111x111111' }, 'IABTCF_PurposeConsents'],
    ['a restriction type that is not 0, 1 or 2', { ...keysOf('restricted_purpose3_not_allowed'), IABTCF_PublisherRestrictions3: `${'_'.repeat(DEPLOYMENT_VENDOR - 1)}3` }, 'IABTCF_PublisherRestrictions3'],
  ].map(([title, prefs, names]) => ({ title, prefs, names })),
  // decisions stated by hand (TCF-only requirements: apps set Consent Mode and GPC themselves)
  cases: [
    ['all keys and the string agree', keysOf('accept_all'), { product_improvement: 'allowed', precise_geo: 'allowed', tcf_outside_gdpr_allowed: 'allowed' }],
    ['LI for purpose 10, keys agree', keysOf('consent1_li10'), { product_improvement: 'allowed_legitimate_interest' }],
    ['publisher requires consent for purpose 10, keys agree', keysOf('restricted_purpose10_require_consent'), { product_improvement: 'tcf_restricted' }],
    ['the string alone (no pre-parsed keys)', { IABTCF_TCString: strings.accept_all.tc_string, IABTCF_gdprApplies: 1 }, { product_improvement: 'allowed' }],
    ['the keys alone, GDPR applies: not accepted', withoutString(keysOf('accept_all')), { product_improvement: 'tcf_missing', tcf_outside_gdpr_allowed: 'tcf_missing' }],
    ['the keys alone, gdprApplies 0', withoutString(keysOf('accept_all', { gdprApplies: 0 })), { product_improvement: 'tcf_missing', tcf_outside_gdpr_allowed: 'allowed' }],
    ['a malformed string beside the keys', { ...keysOf('accept_all'), IABTCF_TCString: MALFORMED.truncated }, { product_improvement: 'tcf_unreadable' }],
    ['gdprApplies as text "0", no string', { IABTCF_gdprApplies: '0', IABTCF_CmpSdkID: 300 }, { tcf_outside_gdpr_allowed: 'allowed', product_improvement: 'tcf_missing' }],
  ].map(([title, prefs, decisions]) => ({ title, prefs, decisions })),
};

const out = {
  generator: 'tests/contract/make_tcf_vectors.mjs', library: '@iabtechlabtcf/core', deployment_vendor: DEPLOYMENT_VENDOR,
  vendor_list: VENDOR_LIST, strings, malformed: MALFORMED, requirements: REQ, in_app: IN_APP,
  bad_requirements: BAD_REQUIREMENTS.map(([requirement, names]) => ({ requirement, names })),
  cases: CASES.map(([requirement, title, signals, reason]) => ({ requirement, title, signals, reason })),
};
const path = process.argv[2] ?? fileURLToPath(new URL('./tcf_vectors.json', import.meta.url));
writeFileSync(path, `${JSON.stringify(out, null, 1)}\n`);
console.log(`wrote ${Object.keys(strings).length} TC strings, ${out.cases.length} decision cases to ${path}`);

// The /train page's CMP stub answers with these (server/static/trainer/cmp.js): the TCData of "Accept all"
// and "Reject all", each around a TC string the IAB library encoded.
const choices = (name) => {
  const { eventStatus, listenerId, ...rest } = strings[name].tcdata;
  void eventStatus; void listenerId;
  return rest;
};
const cmpPath = process.argv[3] ?? fileURLToPath(new URL('../../server/static/trainer/cmp_choices.js', import.meta.url));
writeFileSync(cmpPath, `// Generated by tests/contract/make_tcf_vectors.mjs with the IAB's @iabtechlabtcf/core: do not edit.
// What the page's CMP stub (cmp.js) hands out after "Accept all" / "Reject all" for vendor ${DEPLOYMENT_VENDOR}.
export const VENDOR_ID = ${DEPLOYMENT_VENDOR};
export const CHOICES = ${JSON.stringify({ accept: choices('accept_all'), reject: choices('reject_all') }, null, 1)};
`);
