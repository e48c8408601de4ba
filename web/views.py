"""Pure functions from registry answers (API.md shapes) to what the pages show: rows, frames, snippets.

No Streamlit here, so each is tested as plain Python and the pages stay thin. Evaluations (protocols,
Reproduce, the evaluations table) have their own module, ``eval_views.py``.

>>> human_size(1536)
'1.5 KiB'
>>> best_metric({"accuracy": 0.912, "macro_f1": 0.9})
'accuracy 0.912'
"""

from __future__ import annotations

import json
import re

import pandas as pd

from adapterhub import vocab
from adapterhub.units import human_size as size_text

# the metric a card shows first, when it has one (higher is better, except perplexity/loss)
METRIC_ORDER = ("accuracy", "macro_f1", "f1", "perplexity", "loss")
# the search filters: a method by our name, a task by the Hub pipeline tag that cards store
METHODS = tuple(vocab.METHODS)
TASKS = tuple(task.pipeline_tag for task in vocab.TASKS.values())
SORTS = {"newest": "newest", "most downloaded": "downloads", "best accuracy": "metric:accuracy",
         "best macro-F1": "metric:macro_f1"}


def base_choices(base_model: str | None, catalogue: list[str], local: str) -> tuple[list[str], int]:
    """The base-model options (catalogue names, then a local folder) and the one to preselect:
    the adapter's own base when it is a catalogue name, else the local folder."""
    options = [*catalogue, local]
    return options, options.index(base_model) if base_model in catalogue else len(catalogue)


def card_dataset_index(card: dict, names: list[str]) -> int:
    """Index in ``names`` of the held-out set the card names (``data.test``/``data.eval``), else 0."""
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    for split in ("test", "eval"):
        entry = data.get(split) if isinstance(data.get(split), dict) else {}
        for value in (entry.get("source"), entry.get("name")):
            if value in names:
                return names.index(value)
    return 0


def human_size(n: int | None) -> str:
    """The shared size formatting (`adapterhub.units`, as the CLI prints it), with a dash for unknown
    sizes in tables."""
    return size_text(n) or "-"


def fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_metric(metrics: dict | None) -> str:
    """The headline metric of a summary: the first of METRIC_ORDER present, else any."""
    if not metrics:
        return "-"
    numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    for name in (*METRIC_ORDER, *sorted(numeric)):
        if name in numeric:
            return f"{name} {fmt(numeric[name])}"
    return "-"


def card_facts(summary: dict) -> dict[str, str]:
    """What a Browse card shows besides the name."""
    return {
        "method": summary.get("method") or "-",
        "base model": summary.get("base_model") or "-",
        "size": human_size(summary.get("size")),
        "latest": summary.get("latest_version") or "-",
        "best metric": best_metric(summary.get("metrics")),
        "downloads": str(summary.get("downloads", 0)),
    }


def versions_table(versions: list[dict]) -> pd.DataFrame:
    rows = [{"version": v["version"], "date": (v.get("created_at") or "")[:19].replace("T", " "),
             "size": human_size(v.get("size")), "yanked": bool(v.get("yanked")),
             "yank reason": v.get("yank_reason") or "", "by": v.get("created_by") or "",
             "commit": (v.get("commit") or "")[:12]} for v in versions]
    return pd.DataFrame(rows, columns=["version", "date", "size", "yanked", "yank reason", "by", "commit"])


def files_table(version: dict) -> pd.DataFrame:
    rows = [{"path": f["path"], "size": human_size(f["size"]), "bytes": f["size"], "sha256": f["sha256"]}
            for f in version.get("files", [])]
    return pd.DataFrame(rows, columns=["path", "size", "bytes", "sha256"])


def version_metrics(version: dict) -> dict[str, float]:
    """A version's metrics: the card's, overridden by its evaluations (the newest per metric last)."""
    metrics = {k: v for k, v in (version.get("card") or {}).get("metrics", {}).items() if isinstance(v, (int, float))}
    for ev in sorted(version.get("evaluations", []), key=lambda e: e.get("created_at") or ""):
        metrics.update({k: v for k, v in ev.get("metrics", {}).items() if isinstance(v, (int, float))})
    return metrics


def metrics_over_versions(versions: list[dict]) -> pd.DataFrame:
    """Index: versions oldest to newest; one column per metric (for ``st.line_chart``)."""
    rows = {v["version"]: version_metrics(v) for v in reversed(versions)}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "version"
    return frame.dropna(axis=1, how="all")


def alias_moves(audit: list[dict]) -> pd.DataFrame:
    """The audit trail of alias moves, newest first: when, who, alias, from, to."""
    rows = []
    for entry in sorted(audit, key=lambda e: (str(e.get("at", "")), e.get("id") or 0), reverse=True):
        if not str(entry.get("action", "")).startswith("alias."):
            continue
        d = entry.get("details") or {}
        to = d.get("version") if entry["action"] == "alias.set" else "(deleted)"
        rows.append({"at": str(entry.get("at", ""))[:19].replace("T", " "), "actor": entry.get("actor"),
                     "alias": d.get("alias"), "from": d.get("previous") or "-", "to": to})
    return pd.DataFrame(rows, columns=["at", "actor", "alias", "from", "to"])


def snippets(url: str, ref: str, version: str, summary: dict) -> dict[str, tuple[str, str]]:
    """Copy-paste usage: title -> (language, code)."""
    exact = f"{ref}@{version}"
    base = summary.get("base_model") or "<base model id>"
    return {
        "CLI": ("bash", f"export ADAPTERHUB_URL={url}\nadapterhub pull {exact}"),
        "Python": ("python", (
            "import adapterhub as ah\n"
            f"hub = ah.Hub({url!r})\n"
            f"folder = hub.pull({exact!r})\n"
            "model = ah.AdapterModel(base_model)  # your transformers model\n"
            "model.load_adapter(folder, set_active=True)"
        )),
        "PEFT via HF_ENDPOINT": ("python", (
            "import os\n"
            f"os.environ['HF_ENDPOINT'] = {url!r}  # before importing huggingface_hub\n"
            "from peft import PeftModel\n"
            "from transformers import AutoModel\n"
            f"base = AutoModel.from_pretrained({base!r})\n"
            f"model = PeftModel.from_pretrained(base, {ref!r}, revision={version!r})"
        )),
    }


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return out


def config_diff(a: dict, b: dict, only_changed: bool = True) -> pd.DataFrame:
    """Dotted keys of two configs side by side (``-`` where one lacks the key)."""
    fa, fb = _flatten(a), _flatten(b)
    rows = [{"key": k, "a": fa.get(k, "-"), "b": fb.get(k, "-")} for k in sorted(fa.keys() | fb.keys())]
    if only_changed:
        rows = [r for r in rows if r["a"] != r["b"]]
    return pd.DataFrame(rows, columns=["key", "a", "b"])


def metrics_side_by_side(va: dict, vb: dict) -> pd.DataFrame:
    ma, mb = version_metrics(va), version_metrics(vb)
    rows = [{"metric": k, va["version"]: ma.get(k), vb["version"]: mb.get(k)} for k in sorted(ma.keys() | mb.keys())]
    return pd.DataFrame(rows)


def confusion_frame(labels: list[str], matrix: list[list[int]]) -> pd.DataFrame:
    """Rows: true label; columns: predicted label."""
    frame = pd.DataFrame(matrix, index=labels, columns=labels)
    frame.index.name = "true \\ predicted"
    return frame


def confusion_chart(labels: list[str], matrix: list[list[int]]):
    """The confusion matrix as an Altair heatmap with the counts written in the cells."""
    import altair as alt

    data = pd.DataFrame([{"true": t, "predicted": p, "count": matrix[i][j]}
                         for i, t in enumerate(labels) for j, p in enumerate(labels)])
    axes = {"x": alt.X("predicted:N", sort=labels), "y": alt.Y("true:N", sort=labels)}
    cells = alt.Chart(data).mark_rect().encode(**axes, color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")),
                                               tooltip=["true", "predicted", "count"])
    text = alt.Chart(data).mark_text().encode(**axes, text="count:Q")
    return (cells + text).properties(height=max(160, 40 * len(labels)))


def short_sites(paths: list[str]) -> list[str]:
    """Site paths without the dotted prefix they all share (``bert.encoder.layer.0.attention.self.query``
    -> ``0.attention.self.query``), so a heatmap's rows read as layers; the last part always stays."""
    split = [p.split(".") for p in paths]
    keep = min((len(parts) for parts in split), default=1) - 1
    common = 0
    while common < keep and len({parts[common] for parts in split}) == 1:
        common += 1
    return [".".join(parts[common:]) for parts in split]


def block_frame(entry: dict) -> pd.DataFrame:
    """A Fuse/Route entry of the playground's answer (``engine.block_stats``) as sites x children."""
    sites = list(entry["sites"])
    frame = pd.DataFrame([entry["sites"][s] for s in sites], index=short_sites(sites), columns=entry["children"])
    frame.index.name = "site"
    return frame


def heatmap_chart(frame: pd.DataFrame, value: str):
    """Sites (rows, in model order) x children (columns) as an Altair heatmap, values in the cells."""
    import altair as alt

    data = frame.reset_index().melt(id_vars=frame.index.name or "index", var_name="adapter", value_name=value)
    site = frame.index.name or "index"
    axes = {"x": alt.X("adapter:N", sort=list(frame.columns)), "y": alt.Y(f"{site}:N", sort=list(frame.index))}
    cells = alt.Chart(data).mark_rect().encode(
        **axes, color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme="blues", domain=[0, 1])),
        tooltip=[site, "adapter", alt.Tooltip(f"{value}:Q", format=".3f")])
    text = alt.Chart(data).mark_text().encode(**axes, text=alt.Text(f"{value}:Q", format=".2f"))
    return (cells + text).properties(height=max(120, 28 * len(frame.index)))


def probabilities_frame(base: dict[str, float], adapted: dict[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame({"base": base, "adapted": adapted})
    frame.index.name = "label"
    return frame


ARM_FIGURES = ("requests", "errors", "error_rate", "latency_mean", "latency_std", "quality_mean", "quality_n")


def rollout_arms(rollout: dict) -> pd.DataFrame:
    """Per-arm figures of a RolloutOut: rows are figures, columns ``stable`` and ``canary``."""
    arms = rollout.get("arms") or {}
    return pd.DataFrame({arm: [arms.get(arm, {}).get(f) for f in ARM_FIGURES] for arm in ("stable", "canary")},
                        index=list(ARM_FIGURES))


def rollout_history(rollouts: list[dict]) -> pd.DataFrame:
    rows = [{"id": r["id"], "alias": r["alias"], "stable": r["stable_version"], "canary": r["canary_version"],
             "weight %": r["weight"], "state": r["state"], "started": str(r.get("created_at", ""))[:19].replace("T", " "),
             "by": r.get("created_by"), "reason": r.get("reason") or ""} for r in rollouts]
    return pd.DataFrame(rows, columns=["id", "alias", "stable", "canary", "weight %", "state", "started", "by", "reason"])


def rollout_events(audit: list[dict], rollout_id: int) -> pd.DataFrame:
    """The transitions of one rollout from the audit log, newest first."""
    rows = [{"at": str(e.get("at", ""))[:19].replace("T", " "), "action": e["action"].removeprefix("rollout."),
             "actor": e.get("actor"), "weight": (e.get("details") or {}).get("weight"),
             "from weight": (e.get("details") or {}).get("previous_weight"),
             "reason": (e.get("details") or {}).get("reason") or ""}
            for e in sorted(audit, key=lambda e: (str(e.get("at", "")), e.get("id") or 0), reverse=True)
            if str(e.get("action", "")).startswith("rollout.") and (e.get("details") or {}).get("rollout_id") == rollout_id]
    return pd.DataFrame(rows, columns=["at", "action", "actor", "weight", "from weight", "reason"])


def engines_line(version: dict) -> str:
    """Which engines can serve a version, as the registry recorded at publish (`base_compat`)."""
    engines = version.get("engines") or []
    return f"Served by: {', '.join(engines)}" if engines else "Served by: not recorded (published before engines were)"


_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n.*?^---[ \t]*\r?\n?", re.DOTALL | re.MULTILINE)


def card_body(readme: str) -> str:
    """A model card without its YAML front matter (the Hub's metadata block, which the Hub shows as
    tags, not as text)."""
    return _FRONT_MATTER.sub("", readme, count=1)
