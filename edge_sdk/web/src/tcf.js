// Where a page's consent signals come from: the CMP's __tcfapi, the gtag dataLayer, navigator.globalPrivacyControl.
//
// Why the TCData and not the string in the browser: a TCF v2.2 CMP already
// decodes its TC string for the page (TCData: purpose.consents, vendor.consents,
// publisher.restrictions, specialFeatureOptins), so the browser needs no decoder
// of its own; Node decodes strings with the IAB's @iabtechlabtcf/core (node.js).
// The SDK asks the CMP again before every training run (readPageSignals), so a
// user who changed their mind mid-session stops training at the next run.

import { ERR_BAD_CONSENT_SIGNAL } from './codes.js';
import { ProtocolError } from './contract_errors.js';

const bad = (message) => new ProtocolError(ERR_BAD_CONSENT_SIGNAL, message);

function idSet(obj, what) {
  if (obj === undefined || obj === null) return new Set();
  if (typeof obj !== 'object') throw bad(`TCData.${what} must be an object of id -> boolean`);
  return new Set(Object.entries(obj).filter(([, v]) => v === true).map(([k]) => Number(k)));
}

/**
 * The normalised TCF signal (as consent_signals.js decides on) from a CMP's TCData (TCF v2.2 CMP API).
 * Throws ProtocolError when the CMP reports an error or the user has not decided yet (the UI is showing).
 */
export function tcfFromTCData(tcData) {
  if (!tcData || typeof tcData !== 'object') throw bad('TCData must be the object the CMP passes to __tcfapi callbacks');
  if (tcData.cmpStatus === 'error') throw bad('the CMP reports cmpStatus "error"');
  if (!['tcloaded', 'useractioncomplete'].includes(tcData.eventStatus)) {
    throw bad(`the CMP has no decision yet (eventStatus ${JSON.stringify(tcData.eventStatus)})`);
  }
  const restrictions = new Map();
  for (const [purpose, vendors] of Object.entries(tcData.publisher?.restrictions ?? {})) {
    for (const [vendor, type] of Object.entries(vendors ?? {})) {
      if (![0, 1, 2].includes(type)) throw bad(`TCData: publisher restriction type ${type} is undefined`);
      restrictions.set(`${Number(purpose)}:${Number(vendor)}`, type);
    }
  }
  return Object.freeze({
    version: 2, policyVersion: Number(tcData.tcfPolicyVersion), cmpId: Number(tcData.cmpId),
    publisherCC: String(tcData.publisherCC ?? ''), purposeOneTreatment: Boolean(tcData.purposeOneTreatment),
    purposeConsents: idSet(tcData.purpose?.consents, 'purpose.consents'),
    purposeLegitimateInterests: idSet(tcData.purpose?.legitimateInterests, 'purpose.legitimateInterests'),
    vendorConsents: idSet(tcData.vendor?.consents, 'vendor.consents'),
    vendorLegitimateInterests: idSet(tcData.vendor?.legitimateInterests, 'vendor.legitimateInterests'),
    specialFeatureOptins: idSet(tcData.specialFeatureOptins, 'specialFeatureOptins'), restrictions,
  });
}

/**
 * Ask the page's CMP for its current decision: resolves with TCData once the CMP has one (eventStatus
 * 'tcloaded' or 'useractioncomplete'), null when there is no __tcfapi, and rejects after `timeoutMs`.
 */
export function readTCData(tcfapi = globalThis.__tcfapi, { timeoutMs = 5000 } = {}) {
  if (typeof tcfapi !== 'function') return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => { done = true; reject(bad(`the CMP gave no decision within ${timeoutMs} ms`)); }, timeoutMs);
    tcfapi('addEventListener', 2, (tcData, success) => {
      if (done) return;
      if (!success || tcData?.cmpStatus === 'error') {
        done = true;
        clearTimeout(timer);
        resolve({ ...(tcData ?? {}), cmpStatus: 'error' });
      } else if (['tcloaded', 'useractioncomplete'].includes(tcData.eventStatus)) {
        done = true;
        clearTimeout(timer);
        if (typeof tcData.listenerId === 'number') tcfapi('removeEventListener', 2, () => {}, tcData.listenerId);
        resolve(tcData);
      }
    });
  });
}

/** Consent Mode states from the gtag dataLayer: the 'default' and then every 'update' command, in order. */
export function consentModeFromDataLayer(dataLayer = globalThis.dataLayer) {
  if (!Array.isArray(dataLayer)) return null;
  let states = null;
  for (const entry of dataLayer) {
    const args = entry && typeof entry === 'object' && typeof entry.length === 'number' ? Array.from(entry) : null;
    if (args?.[0] === 'consent' && ['default', 'update'].includes(args[1]) && args[2] && typeof args[2] === 'object') {
      states = { ...(states ?? {}) };
      for (const [k, v] of Object.entries(args[2])) if (v === 'granted' || v === 'denied') states[k] = v;
    }
  }
  return states;
}

/**
 * The signals of the page's visitor, read now: {tc_string (the normalised TCF signal; absent when there is
 * no CMP or it has no decision within `timeoutMs`; a marker decide() reads as unreadable when the CMP failed),
 * gdpr_applies, consent_mode, gpc}.  decide() treats a missing signal by the requirement's rule
 * (docs/CONSENT.md): for TCF, nothing trains.
 */
export async function readPageSignals({ tcfapi = globalThis.__tcfapi, dataLayer = globalThis.dataLayer,
  navigator = globalThis.navigator, consentMode = undefined, timeoutMs = 5000 } = {}) {
  const out = { gpc: navigator?.globalPrivacyControl ?? null,
    consent_mode: consentMode !== undefined ? consentMode : consentModeFromDataLayer(dataLayer) };
  let tcData = null;
  try {
    tcData = await readTCData(tcfapi, { timeoutMs });
  } catch (exc) {
    if (!(exc instanceof ProtocolError)) throw exc;
    // the CMP gave no decision in time (its UI is still showing): no TCF signal, so TCF-gated models do not train
  }
  if (tcData) {
    out.gdpr_applies = typeof tcData.gdprApplies === 'boolean' ? tcData.gdprApplies : null;
    try {
      out.tc_string = tcFromTCDataOrNull(tcData);
    } catch {
      out.tc_string = { unreadable: true }; // decide() answers tcf_unreadable
    }
  }
  return out;
}

function tcFromTCDataOrNull(tcData) {
  if (tcData.gdprApplies === false && !tcData.tcString) return null;
  return tcfFromTCData(tcData);
}
