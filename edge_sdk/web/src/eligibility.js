// Eligibility: may this device train right now? (the rules of edge_sdk/eligibility.py)
//
// The host app reports the device's conditions; the *task* says which ones
// matter, so operators can change the rules without shipping a new app.  A rule
// this SDK does not know counts as failed: refusing is the safe side.

import { ConfigurationError, NotEligibleError } from './errors.js';

const KNOWN = new Set(['require_charging', 'require_unmetered', 'require_idle', 'min_battery']);

/** Validate conditions reported by the app: {charging, unmetered, idle, battery in [0, 1]}. */
export function deviceConditions({ charging = false, unmetered = false, idle = false, battery = 0.0 } = {}) {
  if (!(Number(battery) >= 0 && Number(battery) <= 1)) {
    throw new ConfigurationError(`battery must be a charge level in [0, 1], got ${battery}`);
  }
  return Object.freeze({ charging: !!charging, unmetered: !!unmetered, idle: !!idle, battery: Number(battery) });
}

/** Reasons the device fails `policy` (empty = eligible). */
export function check(policy, conditions) {
  const p = policy ?? {};
  const reasons = [];
  if (p.require_charging && !conditions.charging) reasons.push('the task requires the device to be charging');
  if (p.require_unmetered && !conditions.unmetered) reasons.push('the task requires an unmetered network (e.g. Wi-Fi)');
  if (p.require_idle && !conditions.idle) reasons.push('the task requires the device to be idle');
  let minBattery = Number(p.min_battery || 0);
  if (Number.isNaN(minBattery)) {
    reasons.push(`the task's min_battery ${JSON.stringify(p.min_battery)} is not a number`);
    minBattery = 0;
  }
  if (conditions.battery < minBattery) {
    reasons.push(`battery at ${Math.round(conditions.battery * 100)}% is below the task's minimum of ${Math.round(minBattery * 100)}%`);
  }
  for (const key of Object.keys(p).sort()) {
    if (!KNOWN.has(key) && p[key]) reasons.push(`the task sets an eligibility rule '${key}' this SDK does not know; update the SDK`);
  }
  return reasons;
}

/** Throw NotEligibleError unless `conditions` satisfy `policy`. */
export function ensureEligible(policy, conditions) {
  if (!conditions) {
    throw new ConfigurationError('pass conditions: {charging, unmetered, idle, battery}: the SDK trains only when '
      + 'the host app reports the device\'s state');
  }
  const reasons = check(policy, deviceConditions(conditions));
  if (reasons.length) throw new NotEligibleError(reasons);
}
