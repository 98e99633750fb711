"""The consent rule's one home (fedmark.contract.consent) against TC strings made by the IAB's own encoder.

tests/contract/make_tcf_vectors.mjs encodes TCF v2.2 strings with @iabtechlabtcf/core (known purposes,
vendors, special features, publisher restrictions) and records what that library decodes; the Python decoder
must read the same fields, refuse the malformed strings, and give every documented decision.  The JavaScript
twin is held to the same file by tests/web/js/consent_signals.test.mjs.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from fedmark.contract import ERR_BAD_CONSENT_SIGNAL, ProtocolError
from fedmark.contract import consent as c

HERE = Path(__file__).resolve().parent
VECTORS = json.loads((HERE / "tcf_vectors.json").read_text())


def _req(name: str) -> c.SignalRequirement:
    r = VECTORS["requirements"][name]
    return c.parse_requirement(r["consent_signals"], r["purposes"])


@pytest.mark.parametrize("name", sorted(VECTORS["strings"]))
def test_decoder_reads_what_the_iab_library_encoded(name):
    s = VECTORS["strings"][name]
    assert c.decode_tc_string(s["tc_string"]).to_json() == s["decoded"]


def test_vectors_exercise_every_part_of_the_string():
    decoded = [s["decoded"] for s in VECTORS["strings"].values()]
    assert {t for d in decoded for t in d["restrictions"].values()} == {0, 1, 2}
    assert any(20000 in d["vendor_consents"] for d in decoded)  # range-encoded vendor section
    assert any(d["purpose_legitimate_interests"] and not d["vendor_consents"] for d in decoded)
    assert all(d["policy_version"] == 4 and d["version"] == 2 for d in decoded)  # TCF v2.2


@pytest.mark.parametrize("name", sorted(VECTORS["malformed"]))
def test_malformed_strings_are_refused_with_a_clear_error(name):
    with pytest.raises(ProtocolError) as err:
        c.decode_tc_string(VECTORS["malformed"][name])
    assert err.value.code == ERR_BAD_CONSENT_SIGNAL and "TC string" in str(err.value)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda k: f"{k['requirement']}: {k['title']}")
def test_documented_decisions(case):
    got = c.decide(case["signals"], _req(case["requirement"]))
    assert got == c.Decision(case["reason"] in c.ALLOW_REASONS, case["reason"])


def test_cases_cover_every_reason():
    assert {k["reason"] for k in VECTORS["cases"]} == set(c.DECISION_REASONS)


@pytest.mark.parametrize("bad", VECTORS["bad_requirements"], ids=lambda b: json.dumps(b["requirement"]))
def test_bad_requirements_are_refused_naming_the_key(bad):
    with pytest.raises(ProtocolError) as err:
        c.parse_requirement(bad["requirement"], ["p"])
    assert err.value.code == ERR_BAD_CONSENT_SIGNAL and bad["names"] in str(err.value)


def test_random_strings_never_crash_the_decision():
    """Anything a CMP or a table cell may hold is either decoded or refused as unreadable, never an exception."""
    rng = random.Random(16)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    accepted = VECTORS["strings"]["accept_all"]["tc_string"]
    req = _req("personalised_ads")
    reasons = set()
    for i in range(400):
        if i % 2:
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
        else:  # flip one character of a valid string
            j = rng.randrange(len(accepted))
            s = accepted[:j] + rng.choice(alphabet) + accepted[j + 1:]
        reasons.add(c.decide({"tc_string": s, "consent_mode": {"ad_user_data": "granted",
                                                                "ad_personalization": "granted"}}, req).reason)
    assert reasons <= set(c.DECISION_REASONS) and c.TCF_UNREADABLE in reasons


def test_app_and_header_sources():
    prefs = {"IABTCF_TCString": VECTORS["strings"]["accept_all"]["tc_string"], "IABTCF_gdprApplies": 1}
    signals = {**c.signals_from_iabtcf(prefs), "consent_mode": {"ad_user_data": "granted", "ad_personalization": "granted"},
               **c.gpc_from_headers({"SEC-GPC": "1"})}
    assert c.decide(signals, _req("personalised_ads")).reason == c.GPC_OPT_OUT
    assert c.decide({**signals, **c.gpc_from_headers({})}, _req("personalised_ads")).reason == c.ALLOWED


def test_committed_vectors_are_what_the_generator_writes(tmp_path):
    node = shutil.which("node")
    assert node, "node (>= 20) is not on PATH; install Node.js 20 (the IAB encoder runs in it)"
    out, cmp = tmp_path / "v.json", tmp_path / "cmp_choices.js"
    subprocess.run([node, str(HERE / "make_tcf_vectors.mjs"), str(out), str(cmp)], check=True, timeout=60,
                   capture_output=True)
    assert json.loads(out.read_text()) == VECTORS
    committed = HERE.parents[1] / "server" / "static" / "trainer" / "cmp_choices.js"
    assert cmp.read_text() == committed.read_text(), "regenerate with node tests/contract/make_tcf_vectors.mjs"


# --------------------------------------------------------------------------- one requirement against another
_CM = ("ad_storage", "ad_user_data", "ad_personalization")
_LI_OK = (2, 7, 8, 9, 10, 11)


def _random_requirement(rng: random.Random, within: c.SignalRequirement | None = None) -> c.SignalRequirement:
    """A random requirement; with ``within``, mostly parts of that one (so "covered" happens often too)."""
    def pick(pool, k=None):
        pool = list(pool)
        return tuple(sorted(rng.sample(pool, rng.randint(0, min(len(pool), k or len(pool))))))
    if within is not None and rng.random() < 0.7:
        t = within.tcf
        tcf = None
        if t is not None and rng.random() < 0.8:
            consent = pick(t.consent) + (pick(t.legitimate_interest, 1) if rng.random() < 0.2 else ())
            li = tuple(x for x in pick(set(t.legitimate_interest) | set(x for x in t.consent if x in _LI_OK))
                       if x not in consent)
            sf = pick(t.special_features)
            if consent or li or sf:
                tcf = c.TcfRequirement(t.vendor_id, consent, li, sf, rng.choice(["deny", t.outside_gdpr]))
        req = c.SignalRequirement(purposes=pick(within.purposes), tcf=tcf, consent_mode=pick(within.consent_mode),
                                  gpc=within.gpc and rng.random() < 0.7)
    else:
        tcf = None
        if rng.random() < 0.8:
            consent = pick(range(1, 12), 4)
            li = tuple(x for x in pick(_LI_OK, 3) if x not in consent)
            sf = pick((1, 2))
            if consent or li or sf:
                tcf = c.TcfRequirement(rng.choice([1234, 755]), consent, li, sf, rng.choice(["deny", "allow"]))
        req = c.SignalRequirement(purposes=pick(("a", "b"), 1), tcf=tcf, consent_mode=pick(_CM, 2),
                                  gpc=rng.random() < 0.5)
    return req


def _random_signals(rng: random.Random) -> dict:
    def ids(pool):
        return frozenset(x for x in pool if rng.random() < 0.6)
    tcf = None
    if rng.random() < 0.85:
        restrictions = {(rng.randint(1, 11), rng.choice([1234, 755])): rng.randint(0, 2) for _ in range(rng.randint(0, 2))}
        tcf = c.TcfConsent(2, 0, 0, 1, 1, 1, "EN", 1, 4, True, False, ids((1, 2)), ids(range(1, 12)), ids(_LI_OK),
                           False, "DE", ids((1234, 755)), ids((1234, 755)), restrictions)
    return {"tc_string": tcf, "gdpr_applies": rng.choice([None, True, False]),
            "consent_mode": rng.choice([None, {s: rng.choice(["granted", "denied"]) for s in _CM if rng.random() < 0.8}]),
            "gpc": rng.choice([None, True, False]), "consent": [p for p in ("a", "b") if rng.random() < 0.6]}


def test_shortfall_is_the_one_rule_applied_to_the_weakest_admitted_records():
    """``shortfall(trained, needed)`` is None exactly when no record ``trained`` admits is refused by ``needed``:
    the edge records pass ``trained``, and when they pass ``needed`` no random record passes one and not the other."""
    rng = random.Random(1616)
    outcomes = {"covered": 0, "short": 0}
    for _ in range(1500):
        trained = _random_requirement(rng)
        if not (trained.purposes or trained.tcf or trained.consent_mode or trained.gpc):
            continue
        needed = _random_requirement(rng, within=trained)
        for edge in c.edge_signals(trained):
            assert c.decide(edge, trained).allowed, (trained, edge)
        short = c.shortfall(trained, needed)
        if short is not None:
            outcomes["short"] += 1
            assert short in c.DECISION_REASONS and short not in c.ALLOW_REASONS
            continue
        outcomes["covered"] += 1
        for _ in range(40):
            s = _random_signals(rng)
            if c.decide(s, trained).allowed:
                assert c.decide(s, needed).allowed, (trained, needed, s)
    assert outcomes["covered"] > 200 and outcomes["short"] > 200, outcomes


def test_shortfall_names_the_signal_that_falls_short():
    ads = _req("personalised_ads")
    assert c.shortfall(ads, ads) is None
    no_cm = c.parse_requirement({"tcf": {"vendor_id": 1234, "consent": [1, 3, 4]}, "gpc": True}, ["p"])
    assert c.shortfall(no_cm, ads) == c.CONSENT_MODE_MISSING
    assert c.shortfall(ads, no_cm) is None
    assert c.shortfall(_req("product_improvement"), c.parse_requirement(
        {"tcf": {"vendor_id": 1234, "consent": [1, 10]}}, ["p"])) == c.TCF_PURPOSE_DENIED  # 10 trained by LI
    assert c.shortfall(_req("simple_purposes"), ads) == c.GPC_OPT_OUT
    assert c.shortfall(c.parse_requirement(None, ["marketing"]), c.parse_requirement({"tcf": {"vendor_id": 1234, "consent": [1]}}, ["p"])) == c.TCF_MISSING


# --------------------------------------------------------------------------- in-app IABTCF_* keys
_IN_APP = VECTORS["in_app"]
_GRANTED_CM = {"consent_mode": {"ad_user_data": "granted", "ad_personalization": "granted"}}


@pytest.mark.parametrize("name", sorted(_IN_APP["stored"]))
def test_stored_keys_agree_with_their_string_and_decide_the_same(name):
    """A CMP's full set of keys (written from the IAB library's TCModel) passes the cross-check, and every
    requirement decides the keys exactly as it decides the string alone."""
    prefs = _IN_APP["stored"][name]
    tcf = c.decode_tc_string(prefs["IABTCF_TCString"])
    assert c.iabtcf_mismatches(prefs, tcf) == []
    signals = c.signals_from_iabtcf(prefs)
    for req in VECTORS["requirements"]:
        assert c.decide({**signals, **_GRANTED_CM}, _req(req)) == \
            c.decide({"tc_string": prefs["IABTCF_TCString"], "gdpr_applies": 1, **_GRANTED_CM}, _req(req)), req


@pytest.mark.parametrize("case", _IN_APP["mismatches"], ids=lambda k: k["title"])
def test_keys_that_contradict_the_string_are_refused_naming_the_key(case):
    with pytest.raises(ProtocolError) as err:
        c.signals_from_iabtcf(case["prefs"])
    assert err.value.code == ERR_BAD_CONSENT_SIGNAL and case["names"] in str(err.value)


@pytest.mark.parametrize("case", _IN_APP["cases"], ids=lambda k: k["title"])
def test_in_app_decisions(case):
    signals = c.signals_from_iabtcf(case["prefs"])
    for req, reason in case["decisions"].items():
        assert c.decide(signals, _req(req)) == c.Decision(reason in c.ALLOW_REASONS, reason), req


def test_in_app_vectors_cover_every_key_the_reader_checks():
    named = {m["names"] for m in _IN_APP["mismatches"]}
    assert set(c.IABTCF_BIT_KEYS) | set(c.IABTCF_SCALAR_KEYS) - {"IABTCF_PurposeOneTreatment"} <= named
    assert any(n.startswith(c.IABTCF_RESTRICTIONS_PREFIX) for n in named)
