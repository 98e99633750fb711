// The quality rules before training (as rule_check in edge_sdk/statistics.py).
//
// Why here and not in the encoder: consent decides which records may be looked at, the rules decide which
// of those may train, and the encoder only turns the survivors into rows; prepareTabular runs the three in
// that order for training, scoring and evaluation alike.  A manifest whose rules this SDK cannot read is
// refused: training on every record would break the promise that failing records never train.

import { ERR_BAD_ANSWER } from './codes.js';
import { RowError } from './contract_errors.js';
import { ServerError } from './errors.js';
import { StatisticsError, StatisticsPlan, checkRecords, hasRules } from './statistics.js';

/**
 * Quality rules before training: {passing: rows that pass, errors: a RowError per broken rule, violations:
 * {rule: records breaking it} (non-zero only)}.  `rules` is a manifest's features.rules (null: no rules, every
 * row passes); `rows` are the caller's indices of `records` to check (the consented ones).
 */
export function ruleCheck(records, rules, rows) {
  if (!hasRules(rules)) return { passing: [...rows], errors: [], violations: {} };
  let plan;
  try {
    plan = StatisticsPlan.fromDeclaration(rules, { measuring: false });
  } catch (exc) {
    if (exc instanceof StatisticsError) {
      throw new ServerError(200, ERR_BAD_ANSWER, `the model's quality rules are unusable: ${exc.message}`);
    }
    throw exc;
  }
  const checked = checkRecords(rows.map((i) => records[i]), plan);
  const errors = [];
  rows.forEach((i, j) => {
    for (const rule of checked.broken[j]) errors.push(new RowError(i, rule.split(':')[0], `breaks quality rule ${rule}`));
  });
  const violations = Object.fromEntries(Object.entries(checked.violations).filter(([, n]) => n));
  return { passing: rows.filter((_, j) => checked.passed[j]), errors, violations };
}
