"""Epsilon from the ledger in state: monotone, sensible, and equal to dp-accounting called directly."""
from __future__ import annotations

import math

import dp_accounting
import pytest
from dp_accounting.rdp import RdpAccountant

from server.aggregation import (ConfigError, PrivacyBudget, PrivacyBudgetExceeded, PrivacyLedger, check_budget,
                                epsilon_for)


def test_epsilon_matches_dp_accounting_called_directly():
    z, q, rounds, delta = 1.1, 0.01, 1000, 1e-5
    acc = RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds)
    direct = acc.get_epsilon(delta)
    ledger = PrivacyLedger()
    for _ in range(rounds):             # one record per round, as the server does
        ledger = ledger.record(z, q)
    assert len(ledger.events) == 1 and ledger.rounds == rounds   # run-length encoded
    assert ledger.epsilon(delta) == pytest.approx(direct, rel=1e-12)
    assert 0.5 < direct < 20  # a sane DP-FedAvg regime, not a degenerate 0 or inf


def test_mixed_history_composes_like_the_accountant():
    ledger = PrivacyLedger().record(1.0, 0.02, 50).record(2.0, 0.05, 30).record(1.0, 0.02, 10)
    assert [e.count for e in ledger.events] == [50, 30, 10]
    acc = RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(1.0)), 60)
    acc.compose(dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(2.0)), 30)
    assert ledger.epsilon(1e-6) == pytest.approx(acc.get_epsilon(1e-6), rel=1e-9)


def test_full_participation_is_a_plain_gaussian():
    acc = RdpAccountant()
    acc.compose(dp_accounting.GaussianDpEvent(5.0), 20)
    assert PrivacyLedger().record(5.0, 1.0, 20).epsilon(1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-12)


def test_epsilon_is_monotone_in_rounds_and_decreasing_in_noise():
    eps_by_rounds = [PrivacyLedger().record(1.0, 0.01, n).epsilon(1e-5) for n in (1, 10, 100, 1000, 5000)]
    assert all(a < b for a, b in zip(eps_by_rounds, eps_by_rounds[1:]))
    eps_by_z = [PrivacyLedger().record(z, 0.01, 500).epsilon(1e-5) for z in (0.6, 0.8, 1.0, 1.5, 3.0)]
    assert all(a > b for a, b in zip(eps_by_z, eps_by_z[1:]))
    eps_by_q = [PrivacyLedger().record(1.0, q, 500).epsilon(1e-5) for q in (0.001, 0.01, 0.1)]
    assert all(a < b for a, b in zip(eps_by_q, eps_by_q[1:]))


def test_edge_cases():
    assert PrivacyLedger().epsilon(1e-5) == 0.0
    assert math.isinf(PrivacyLedger().record(0.0, 0.1).epsilon(1e-5))   # no noise: no guarantee
    with pytest.raises(ConfigError, match="delta"):
        epsilon_for([], 0.0)


def test_budget_check_says_how_far_over_and_what_to_do():
    ledger = PrivacyLedger().record(1.0, 0.1, 5)
    eps_now = ledger.epsilon(1e-5)
    eps_next = ledger.record(1.0, 0.1).epsilon(1e-5)
    assert check_budget(ledger, 1.0, 0.1, eps_next + 1e-9, 1e-5) == pytest.approx(eps_next)
    with pytest.raises(PrivacyBudgetExceeded) as info:
        check_budget(ledger, 1.0, 0.1, (eps_now + eps_next) / 2, 1e-5)
    msg = str(info.value)
    assert "5 DP round(s)" in msg and "raise epsilon_budget" in msg and f"{eps_next:.4g}" in msg
    assert info.value.epsilon_next == pytest.approx(eps_next)
    with pytest.raises(ConfigError):
        PrivacyBudget(0.0, 1e-5)
