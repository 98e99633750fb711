// A consent management platform (CMP) stub for the trainer page, speaking the IAB TCF v2.2 CMP API.
//
// Why a stub that behaves like a real CMP: the SDK must read consent the way it
// will on a customer's site — through window.__tcfapi ('ping', 'addEventListener',
// 'removeEventListener'), from the TCData a CMP hands out — and nothing else.  The
// TCData here wraps TC strings the IAB's own encoder made (cmp_choices.js, generated
// by tests/contract/make_tcf_vectors.mjs): "Accept all" and "Reject all" for the
// deployment's vendor.  Until the visitor decides, listeners are told the UI is
// showing (eventStatus 'cmpuishown'), and the SDK treats that as no TCF signal:
// a model whose policy needs TCF consent does not train.  The choice is kept in
// localStorage like a CMP's cookie, and every change is pushed to every listener
// (eventStatus 'useractioncomplete'), so the SDK's next run sees it.

import { CHOICES, VENDOR_ID } from './cmp_choices.js';

const STORE = 'fedmark.trainer.cmp';
const listeners = new Map();
let nextId = 1;
let choice = localStorage.getItem(STORE); // 'accept' | 'reject' | null

function tcData(listenerId, eventStatus) {
  if (!choice) {
    return { tcString: '', tcfPolicyVersion: 4, cmpId: CHOICES.accept.cmpId, cmpVersion: CHOICES.accept.cmpVersion,
      gdprApplies: true, eventStatus: 'cmpuishown', cmpStatus: 'loaded', listenerId };
  }
  return { ...structuredClone(CHOICES[choice]), eventStatus, listenerId };
}

function tcfapi(command, version, callback, parameter) {
  if (typeof callback !== 'function') return;
  if (version !== 2 && version !== undefined && version !== null) {
    callback(null, false); // this CMP speaks TCF v2 only
    return;
  }
  if (command === 'ping') {
    callback({ gdprApplies: true, cmpLoaded: true, cmpStatus: 'loaded', displayStatus: choice ? 'hidden' : 'visible',
      apiVersion: '2.2', cmpVersion: CHOICES.accept.cmpVersion, cmpId: CHOICES.accept.cmpId, gvlVersion: 150,
      tcfPolicyVersion: 4 }, true);
  } else if (command === 'addEventListener') {
    const id = nextId++;
    listeners.set(id, callback);
    callback(tcData(id, 'tcloaded'), true);
  } else if (command === 'removeEventListener') {
    callback(listeners.delete(parameter), true);
  } else {
    callback(null, false); // getTCData was removed in TCF v2.2; unknown commands fail
  }
}

/** The visitor's answer in the banner: 'accept' or 'reject' ('reset' shows the banner again). */
export function decide(answer) {
  choice = answer === 'reset' ? null : answer;
  if (choice) localStorage.setItem(STORE, choice);
  else localStorage.removeItem(STORE);
  for (const [id, cb] of listeners) cb(tcData(id, choice ? 'useractioncomplete' : 'cmpuishown'), true);
  render();
}

function render() {
  const banner = document.getElementById('cmp-banner');
  if (!banner) return;
  banner.dataset.choice = choice ?? 'none';
  document.getElementById('cmp-status').textContent = choice === 'accept'
    ? `You accepted: purposes 1-11 and vendor ${VENDOR_ID} have consent.`
    : choice === 'reject' ? 'You rejected: no purpose and no vendor has consent; nothing trains for models that need it.'
      : 'No choice yet: models whose policy needs TCF consent will not train.';
}

window.__tcfapi = tcfapi;
document.addEventListener('DOMContentLoaded', () => {
  for (const answer of ['accept', 'reject', 'reset']) {
    document.getElementById(`cmp-${answer}`)?.addEventListener('click', () => decide(answer));
  }
  render();
});
if (document.readyState !== 'loading') render();
