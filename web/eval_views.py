"""Pure helpers for evaluations (API.md's EvaluationOut, a card's ``evaluation``): the Evaluate form's
starting values from the protocol a card's figures were scored with, the settings a run passes (only
what the user changed), a protocol in words, the Reproduce list, and the evaluations table that
tells two evaluations of one version on one dataset apart (protocol, overrides, verification).

No Streamlit here, so each is tested as plain Python and the pages stay thin.

>>> verification_mark(7, False, ["x" * 3000])["differences"][0][-3:], verification_mark("card", True, [])
('xxx', {'reproduced': True, 'differences': [], 'of_card': True})
"""

from __future__ import annotations

import pandas as pd

from adapterhub.eval_protocol import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    SCORED_TOKENS,
    SCORINGS,
    EvalProtocol,
    ProtocolError,
    card_results,
)
from adapterhub.web.views import METRIC_ORDER

# the form's fields, named as reproduce.evaluate_adapter's arguments
FIELDS = ("base", "data", "sample", "sample_seed", "max_length", "batch_size", "scoring")
AUTO = ""  # scoring: decided by the adapter's task (only for a card without a protocol)
MAX_DIFFERENCES, MAX_DIFFERENCE_CHARS = 50, 2000  # what the registry stores of a verification
CARD = "card"


def card_protocol(card: dict | None) -> tuple[EvalProtocol | None, str | None]:
    """The protocol the card's headline figures were scored with (None when it records none), and a
    line saying why when the card's protocol cannot be read."""
    try:
        results = card_results(card or {})
    except ProtocolError as exc:
        return None, f"the card's evaluation protocol cannot be read ({exc}); give the base model and data"
    return (results[0][0] if results else None), None


def form_defaults(protocol: EvalProtocol | None, base: str = "", data: str = "",
                  max_length: int | None = None) -> dict:
    """The form's starting values: the protocol's; for a card without one, ``base`` and ``data``
    (what the page found), every example, ``max_length`` (the card's recipe, else 256), batch 16."""
    if protocol is None:
        return {"base": base, "data": data, "sample": 0, "sample_seed": 0,
                "max_length": int(max_length or DEFAULT_MAX_LENGTH), "batch_size": DEFAULT_BATCH_SIZE,
                "scoring": AUTO}
    return {"base": protocol.base or base, "data": protocol.data.ref, "sample": protocol.data.sample or 0,
            "sample_seed": protocol.data.sample_seed, "max_length": protocol.max_length,
            "batch_size": protocol.batch_size, "scoring": protocol.scoring}


def run_settings(defaults: dict, chosen: dict, from_card: bool) -> dict:
    """``reproduce.evaluate_adapter``'s keyword arguments: what the user changed from ``defaults``,
    None for the rest (so the card's protocol decides it and every change is recorded as an override).

    A sample of 0 means every example. ``from_card``: the defaults are a card's protocol; without
    one, base and data are always passed. Other data than the card's takes the form's sample (the
    card's sample belongs to the card's data)."""
    out = {k: (chosen[k] if chosen[k] != defaults[k] else None) for k in FIELDS}
    out["scoring"] = out["scoring"] or None
    if not from_card:
        out["base"], out["data"] = chosen["base"] or None, chosen["data"] or None
    sample = int(chosen["sample"]) or None
    if from_card and out["data"] is not None:
        out["sample"], out["sample_seed"] = sample, (chosen["sample_seed"] if sample else None)
    elif from_card and out["sample"] is not None and sample is None:
        raise ProtocolError(f"the card scores a seeded sample of {defaults['sample']}: give a sample size "
                            f"(every example of the card's data cannot be asked for here; choose the data again)")
    else:
        out["sample"] = sample if out["sample"] is not None else None
    return out


def overrides_text(overrides: dict | None) -> str:
    """``max_length 8 (card: 64); sample 10 (card: 24)``, or "-" for none."""
    parts = []
    for name, change in sorted((overrides or {}).items()):
        used, was = (change.get("used"), change.get("card")) if isinstance(change, dict) else (change, "?")
        parts.append(f"{name} {used} (card: {was})")
    return "; ".join(parts) or "-"


def protocol_facts(protocol: dict | None) -> dict[str, str]:
    """A result's protocol in words, for the lines under its figures ({} when it has none)."""
    if not protocol:
        return {}
    p = EvalProtocol.from_dict(protocol)
    facts = {"protocol": p.describe(), "base": p.base or "-", "scoring": f"{p.scoring}: {SCORINGS[p.scoring]}",
             "scored tokens": str(protocol.get("scored_tokens") or SCORED_TOKENS[p.scoring])}
    if p.template is not None:
        facts["template sha256"] = p.template.sha256
    if p.overrides:
        facts["overrides"] = overrides_text(p.overrides)
    if p.software:
        facts["software"] = ", ".join(f"{k} {v}" for k, v in sorted(p.software.items()))
    return facts


def data_options(card_ref: str | None, builtin: list[str], upload: str) -> list[str]:
    """The data choices: the card's own data first when it is not a built-in held-out set, every
    built-in ``:test`` set, then the upload entry."""
    tests = sorted(n for n in builtin if n.endswith(":test"))
    return [*([card_ref] if card_ref and card_ref not in tests else []), *tests, upload]


def recorded_of(evaluation: dict) -> dict:
    """What a re-run of a registry evaluation is compared with (``same_figures``' ``recorded``)."""
    return {"metrics": dict(evaluation.get("metrics") or {}), "confusion_matrix": evaluation.get("confusion_matrix"),
            "data_sha256": evaluation.get("dataset_sha256")}


def verification_mark(of: int | str, reproduced: bool, differences: list[str]) -> dict:
    """The ``verification`` a re-run is recorded with: of evaluation ``of`` (an id) or of the card
    (``"card"``), cut to what the registry stores (50 differences of 2000 characters)."""
    mark = {"reproduced": bool(reproduced),
            "differences": [str(d)[:MAX_DIFFERENCE_CHARS] for d in differences[:MAX_DIFFERENCES]]}
    mark.update({"of_card": True} if of == CARD else {"of": int(of)})
    return mark


def rerun_record(of: int | str, dataset: str | None, run: dict) -> dict:
    """``Hub.post_eval``'s arguments (after the reference) recording a re-run (``Verification.to_dict()``)."""
    result = run["result"]
    name = dataset or EvalProtocol.from_dict(result["protocol"]).data.label()
    return {"dataset": name, "dataset_sha256": result["dataset_sha256"], "metrics": result["metrics"],
            "protocol": result["protocol"], "confusion_matrix": result.get("confusion_matrix"),
            "verification": verification_mark(of, run["reproduced"], run["differences"])}


def _card_results(card: dict | None) -> list[tuple[EvalProtocol, dict]] | str:
    try:
        return card_results(card or {})
    except ProtocolError as exc:
        return f"unreadable protocol: {exc}"


def reproducible(version: dict) -> list[dict]:
    """What the Reproduce buttons of one version re-run: its card's recorded figures (all of them,
    headline first, in one run) and each of its evaluations recorded with a protocol.
    Each: ``{"key", "of" (an id or "card"), "label", "dataset", "evaluation" (None for the card)}``."""
    items = []
    results = _card_results(version.get("card"))
    if results and not isinstance(results, str):
        described = "; ".join(p.describe() for p, _ in results)
        items.append({"key": f"card-{version['version']}", "of": CARD, "dataset": None, "evaluation": None,
                      "label": f"the card's figures of {version['version']}: {described}"})
    for ev in version.get("evaluations") or []:
        if not isinstance(ev.get("protocol"), dict):
            continue
        try:
            described = EvalProtocol.from_dict(ev["protocol"]).describe()
        except ProtocolError:
            continue
        items.append({"key": f"ev-{ev['id']}", "of": ev["id"], "dataset": ev.get("dataset"), "evaluation": ev,
                      "label": f"evaluation #{ev['id']} ({ev.get('dataset')}, by {ev.get('created_by')}): {described}"})
    return items


def _same_run(card: EvalProtocol, protocol: dict | None) -> bool:
    """Whether a re-run's protocol is one of the card's results (a card may record several)."""
    try:
        p = EvalProtocol.from_dict(protocol) if protocol else None
    except ProtocolError:
        return False
    return p is not None and (p.scoring, p.data.ref, p.data.sample, p.data.sample_seed) == (
        card.scoring, card.data.ref, card.data.sample, card.data.sample_seed)


def verification_status(mark: dict | None, checks: list[dict], has_protocol: bool) -> str:
    """One cell: what this evaluation re-ran (``mark``), then what re-ran it (``checks``)."""
    parts = []
    if isinstance(mark, dict):
        target = "the card" if mark.get("of_card") else f"#{mark.get('of')}"
        n = len(mark.get("differences") or [])
        parts.append(f"re-run of {target}: " + ("reproduced" if mark.get("reproduced")
                                                  else f"NOT reproduced ({n} difference{'s' * (n != 1)})"))
    for check in checks:
        ok = (check.get("verification") or {}).get("reproduced")
        parts.append(f"{'reproduced' if ok else 'NOT reproduced'} by #{check.get('id')}")
    if not parts:
        parts.append("not re-run yet" if has_protocol else "no protocol: cannot be re-run")
    return "; ".join(parts)


def _protocol_cells(protocol: dict | None) -> tuple[str, str]:
    if not protocol:
        return "not recorded", "-"
    try:
        p = EvalProtocol.from_dict(protocol)
    except ProtocolError as exc:
        return f"unreadable protocol: {exc}", "-"
    return p.describe(), overrides_text(p.overrides)


def _when(text: str | None) -> str:
    return (text or "")[:19].replace("T", " ")


FIXED = ("version", "evaluation", "dataset", "verification", "overrides", "protocol", "by", "at")  # metrics after dataset


def _row(metrics: dict | None, **cells) -> dict:
    numbers = {k: v for k, v in (metrics or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in FIXED}
    return {**numbers, **cells}


def evaluations_table(versions: list[dict]) -> pd.DataFrame:
    """Every recorded evaluation, a version's card figures first: version, which ("card" or "#id"),
    dataset, the metrics, the verification status (what a row re-ran, and which later rows re-ran
    it), the overrides of the card's protocol, and the protocol's one line."""
    evals = [ev for v in versions for ev in v.get("evaluations") or []]
    rows = []
    for v in versions:
        results = _card_results(v.get("card"))
        card_checks = [ev for ev in v.get("evaluations") or [] if (ev.get("verification") or {}).get("of_card")]
        for protocol, recorded in ([] if isinstance(results, str) else results):
            checks = [ev for ev in card_checks if _same_run(protocol, ev.get("protocol"))]
            rows.append(_row(recorded["metrics"], version=v["version"], evaluation=CARD, dataset=protocol.data.label(),
                             protocol=protocol.describe(), overrides=overrides_text(protocol.overrides),
                             verification=verification_status(None, checks, True), by="card",
                             at=_when(v.get("created_at"))))
        for ev in v.get("evaluations") or []:
            described, overrides = _protocol_cells(ev.get("protocol"))
            checks = [e for e in evals if ev.get("id") and (e.get("verification") or {}).get("of") == ev.get("id")]
            status = verification_status(ev.get("verification"), checks, isinstance(ev.get("protocol"), dict))
            rows.append(_row(ev.get("metrics"), version=v["version"], evaluation=f"#{ev.get('id')}",
                             dataset=ev.get("dataset"), protocol=described, overrides=overrides,
                             verification=status, by=ev.get("created_by"), at=_when(ev.get("created_at"))))
    names = {k for row in rows for k in row} - set(FIXED)
    metrics = [m for m in METRIC_ORDER if m in names] + sorted(names - set(METRIC_ORDER))
    return pd.DataFrame(rows, columns=[*FIXED[:3], *metrics, *FIXED[3:]])
