"""The pure view helpers: sizes, headline metrics, metric history, alias moves, config diffs, and the
evaluations' (the Evaluate form from a card's protocol, the Reproduce list, the evaluations table)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapterhub.eval_protocol import ARGMAX_HEAD, DataRef, EvalProtocol, ProtocolError
from adapterhub.web import eval_views, views


def test_human_size_picks_the_unit():
    assert [views.human_size(n) for n in (None, 0, 1023, 1536, 5 * 1024**2)] == ["-", "0 B", "1023 B", "1.5 KiB",
                                                                                "5.0 MiB"]


def test_best_metric_prefers_accuracy_then_falls_back_to_any_number():
    assert views.best_metric({"macro_f1": 0.5, "accuracy": 0.91234}) == "accuracy 0.9123"
    assert views.best_metric({"bleu": 12.0, "note": "x"}) == "bleu 12"
    assert views.best_metric({}) == "-"


def test_version_metrics_take_evaluations_over_the_card_newest_last():
    version = {"version": "1.0.0", "card": {"metrics": {"accuracy": 0.5, "loss": 1.0}},
               "evaluations": [{"created_at": "2026-01-02", "metrics": {"accuracy": 0.7}},
                               {"created_at": "2026-01-01", "metrics": {"accuracy": 0.6}}]}
    assert views.version_metrics(version) == {"accuracy": 0.7, "loss": 1.0}


def test_metrics_over_versions_runs_oldest_to_newest():
    versions = [{"version": "1.1.0", "evaluations": [{"metrics": {"accuracy": 0.9}}]},
                {"version": "1.0.0", "evaluations": [{"metrics": {"accuracy": 0.8}}]}]
    frame = views.metrics_over_versions(versions)
    assert list(frame.index) == ["1.0.0", "1.1.0"] and list(frame["accuracy"]) == [0.8, 0.9]


def test_alias_moves_keep_only_alias_actions_newest_first():
    audit = [{"id": 1, "at": "2026-01-01T00:00:00", "actor": "a", "action": "version.publish", "details": {}},
             {"id": 2, "at": "2026-01-01T00:00:00", "actor": "a", "action": "alias.set",
              "details": {"alias": "stable", "version": "1.0.0", "previous": None}},
             {"id": 3, "at": "2026-01-01T00:00:00", "actor": "b", "action": "alias.set",
              "details": {"alias": "stable", "version": "1.1.0", "previous": "1.0.0"}},
             {"id": 4, "at": "2026-01-02T00:00:00", "actor": "b", "action": "alias.delete",
              "details": {"alias": "canary", "previous": "1.1.0"}}]
    moves = views.alias_moves(audit)
    assert moves[["alias", "from", "to"]].values.tolist() == [["canary", "1.1.0", "(deleted)"],
                                                             ["stable", "1.0.0", "1.1.0"], ["stable", "-", "1.0.0"]]


def test_config_diff_flattens_nested_keys_and_marks_missing_ones():
    diff = views.config_diff({"r": 4, "x": {"y": 1}, "same": "s"}, {"r": 8, "x": {"y": 1, "z": [1]}, "same": "s"})
    assert diff.values.tolist() == [["r", "4", "8"], ["x.z", "-", "[1]"]]


def test_snippets_name_the_exact_version_and_the_endpoint():
    code = views.snippets("http://hub:8000", "acme/a", "1.2.0", {"base_model": "org/base"})
    assert code["CLI"][1].endswith("adapterhub pull acme/a@1.2.0")
    assert "os.environ['HF_ENDPOINT'] = 'http://hub:8000'" in code["PEFT via HF_ENDPOINT"][1]
    assert "AutoModel.from_pretrained('org/base')" in code["PEFT via HF_ENDPOINT"][1]


def test_base_choices_preselect_the_adapters_catalogue_base_else_a_local_folder():
    assert views.base_choices("minilm-l6", ["smollm2-135m", "minilm-l6"], "local") == (
        ["smollm2-135m", "minilm-l6", "local"], 1)
    assert views.base_choices("tiny/base", ["smollm2-135m", "minilm-l6"], "local")[1] == 2


def test_the_cards_held_out_set_is_preselected():
    names = ["20ng:test", "bbc-news:test", "upload"]
    assert views.card_dataset_index({"data": {"test": {"source": "bbc-news:test"}}}, names) == 1
    assert views.card_dataset_index({"data": {"eval": {"name": "bbc-news:test"}}}, names) == 1
    assert views.card_dataset_index({"data": {"eval": {"name": "/tmp/x.jsonl"}}}, names) == 0
    assert views.card_dataset_index({}, names) == 0


def test_short_sites_drop_the_shared_prefix_but_keep_the_last_part():
    paths = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.11.mlp.down_proj"]
    assert views.short_sites(paths) == ["0.self_attn.q_proj", "0.self_attn.v_proj", "11.mlp.down_proj"]
    assert views.short_sites(["bert.pooler.dense"]) == ["dense"]
    assert views.short_sites(["a.b.q", "a.b.q2"]) == ["q", "q2"]


def test_block_frame_is_sites_by_children_and_the_heatmap_draws_every_cell():
    entry = {"kind": "Fuse", "children": ["news", "sent"], "value": "attention",
             "sites": {"m.layers.0.q_proj": [0.25, 0.75], "m.layers.1.q_proj": [0.6, 0.4]}}
    frame = views.block_frame(entry)
    assert frame.index.tolist() == ["0.q_proj", "1.q_proj"] and frame.columns.tolist() == ["news", "sent"]
    assert frame.loc["1.q_proj", "news"] == 0.6
    spec = views.heatmap_chart(frame, "attention").to_dict()
    cells = next(iter(spec["datasets"].values()))
    assert {(c["site"], c["adapter"], c["attention"]) for c in cells} == {
        ("0.q_proj", "news", 0.25), ("0.q_proj", "sent", 0.75), ("1.q_proj", "news", 0.6), ("1.q_proj", "sent", 0.4)}
    assert spec["layer"][0]["encoding"]["y"]["sort"] == ["0.q_proj", "1.q_proj"]


def test_engines_line_names_the_engines_or_says_none_were_recorded():
    assert views.engines_line({"engines": ["peft", "vllm"]}) == "Served by: peft, vllm"
    assert views.engines_line({}) == "Served by: not recorded (published before engines were)"


def test_card_body_drops_the_front_matter_only():
    card = "---\nbase_model: sentence-transformers/all-MiniLM-L6-v2\nlibrary_name: peft\n---\n# Title\n\ntext ---\n"
    assert views.card_body(card) == "# Title\n\ntext ---\n"
    assert views.card_body("# no metadata\n---\n") == "# no metadata\n---\n"


# ---------------------------------------------------------------------- evaluations (eval_views)
def _protocol(**changes) -> EvalProtocol:
    p = EvalProtocol(task="classification", scoring=ARGMAX_HEAD, labels=("neg", "pos"), max_length=128,
                     data=DataRef("bbc-news:test", sample=300, sample_seed=0, sha256="a" * 64, examples=300),
                     base="sentence-transformers/all-MiniLM-L6-v2")
    return p.with_overrides(**changes) if changes else p


def _card(protocol: EvalProtocol, matrix=((2, 1), (0, 3))) -> dict:
    return {"metrics": {"accuracy": 0.83}, "evaluation": {"protocol": protocol.to_dict(),
                                                          "confusion_matrix": [list(r) for r in matrix]}}


def test_the_form_starts_from_the_cards_protocol_or_from_what_the_page_found():
    protocol, problem = eval_views.card_protocol(_card(_protocol()))
    assert problem is None and eval_views.form_defaults(protocol) == {
        "base": "sentence-transformers/all-MiniLM-L6-v2", "data": "bbc-news:test", "sample": 300, "sample_seed": 0,
        "max_length": 128, "batch_size": 16, "scoring": "argmax-head"}
    assert eval_views.card_protocol({"metrics": {"accuracy": 0.9}}) == (None, None)
    broken, problem = eval_views.card_protocol({"evaluation": {"protocol": {"task": "classification"}}})
    assert broken is None and "cannot be read" in problem and "give the base model and data" in problem
    assert eval_views.form_defaults(None, base="minilm-l6", data="20ng:test", max_length=64) == {
        "base": "minilm-l6", "data": "20ng:test", "sample": 0, "sample_seed": 0, "max_length": 64,
        "batch_size": 16, "scoring": ""}


def test_a_run_passes_only_what_the_user_changed_from_the_cards_protocol():
    defaults = eval_views.form_defaults(_protocol())
    assert eval_views.run_settings(defaults, dict(defaults), from_card=True) == dict.fromkeys(eval_views.FIELDS)
    changed = eval_views.run_settings(defaults, {**defaults, "max_length": 64, "scoring": ""}, from_card=True)
    assert changed == {**dict.fromkeys(eval_views.FIELDS), "max_length": 64}
    # other data: the form's sample goes with it (the card's sample belongs to the card's data)
    other = eval_views.run_settings(defaults, {**defaults, "data": "/tmp/mine.jsonl"}, from_card=True)
    assert (other["data"], other["sample"], other["sample_seed"]) == ("/tmp/mine.jsonl", 300, 0)
    whole = eval_views.run_settings(defaults, {**defaults, "data": "/tmp/mine.jsonl", "sample": 0}, from_card=True)
    assert (whole["sample"], whole["sample_seed"]) == (None, None)
    with pytest.raises(ProtocolError, match="seeded sample of 300"):
        eval_views.run_settings(defaults, {**defaults, "sample": 0}, from_card=True)


def test_without_a_card_protocol_base_and_data_are_always_passed():
    defaults = eval_views.form_defaults(None, base="", data="20ng:test")
    chosen = {**defaults, "base": "/models/tiny", "sample": 0, "batch_size": 8}
    assert eval_views.run_settings(defaults, chosen, from_card=False) == {
        **dict.fromkeys(eval_views.FIELDS), "base": "/models/tiny", "data": "20ng:test", "batch_size": 8}
    assert eval_views.run_settings(defaults, {**chosen, "sample": 5}, from_card=False)["sample"] == 5


def test_a_results_protocol_reads_as_lines_with_its_overrides_and_software():
    done = replace(_protocol(max_length=64), software={"torch": "2.1", "adapterhub": "0.1.0"})
    facts = eval_views.protocol_facts(done.to_dict())
    assert facts["protocol"].startswith("classification by the head's argmax on bbc-news:test (seeded sample of 300")
    assert "overrides max_length" in facts["protocol"] and facts["overrides"] == "max_length 64 (card: 128)"
    assert facts["software"] == "adapterhub 0.1.0, torch 2.1"
    assert facts["base"] == "sentence-transformers/all-MiniLM-L6-v2" and facts["scoring"].startswith("argmax-head: ")
    assert eval_views.protocol_facts(None) == {} and eval_views.overrides_text({}) == "-"


def test_the_cards_own_data_comes_first_unless_it_is_a_builtin_test_set():
    builtin = ["bbc-news:test", "bbc-news:train", "20ng:test"]
    assert eval_views.data_options("/data/x.jsonl", builtin, "up") == ["/data/x.jsonl", "20ng:test", "bbc-news:test", "up"]
    assert eval_views.data_options("bbc-news:test", builtin, "up") == ["20ng:test", "bbc-news:test", "up"]
    assert eval_views.data_options("bbc-news:train", builtin, "up")[0] == "bbc-news:train"
    assert eval_views.data_options(None, builtin, "up") == ["20ng:test", "bbc-news:test", "up"]


def test_a_rerun_is_recorded_with_a_verification_cut_to_what_the_registry_stores():
    mark = eval_views.verification_mark(7, False, ["x" * 2500] * 60)
    assert mark["of"] == 7 and mark["reproduced"] is False and "of_card" not in mark
    assert len(mark["differences"]) == 50 and {len(d) for d in mark["differences"]} == {2000}
    assert eval_views.verification_mark("card", True, []) == {"reproduced": True, "differences": [], "of_card": True}
    run = {"reproduced": True, "differences": [],
           "result": {"dataset_sha256": "a" * 64, "metrics": {"accuracy": 0.83}, "protocol": _protocol().to_dict(),
                      "confusion_matrix": [[2, 1], [0, 3]]}}
    record = eval_views.rerun_record("card", None, run)
    assert record["dataset"] == "bbc-news:test (seeded sample of 300, seed 0)"
    assert record["verification"] == {"reproduced": True, "differences": [], "of_card": True}
    assert record["confusion_matrix"] == [[2, 1], [0, 3]] and record["protocol"] == _protocol().to_dict()
    assert eval_views.rerun_record(3, "bbc", run)["dataset"] == "bbc"


def _evaluation(id_, protocol, accuracy, verification=None, matrix=((2, 1), (0, 3))):
    return {"id": id_, "version": "1.0.0", "dataset": "bbc-news:test", "dataset_sha256": "a" * 64,
            "metrics": {"accuracy": accuracy}, "created_by": "ann", "created_at": f"2026-01-0{id_}T10:00:00",
            "protocol": protocol.to_dict() if protocol else None, "verification": verification,
            "confusion_matrix": [list(r) for r in matrix]}


def _versions() -> list[dict]:
    card_check = {"of": None, "of_card": True, "reproduced": True, "differences": []}
    miss = {"of": 1, "of_card": False, "reproduced": False, "differences": ["confusion matrix differs", "x"]}
    return [{"version": "1.0.0", "created_at": "2026-01-01T09:00:00", "card": _card(_protocol()), "evaluations": [
        _evaluation(1, _protocol(), 0.83), _evaluation(2, _protocol(max_length=64), 0.7),
        _evaluation(3, _protocol(), 0.83, card_check), _evaluation(4, _protocol(), 0.8, miss),
        _evaluation(5, None, 0.9)]}]


def test_evaluations_of_one_version_on_one_dataset_say_why_their_figures_differ():
    table = eval_views.evaluations_table(_versions()).set_index("evaluation")
    assert list(table.columns) == ["version", "dataset", "accuracy", "verification", "overrides", "protocol", "by", "at"]
    assert list(table.index) == ["card", "#1", "#2", "#3", "#4", "#5"]
    assert table.loc["card", "dataset"] == "bbc-news:test (seeded sample of 300, seed 0)"
    assert table.loc["card", "verification"] == "reproduced by #3"
    assert "max_length 128" in table.loc["#1", "protocol"] and table.loc["#1", "overrides"] == "-"
    assert "max_length 64" in table.loc["#2", "protocol"] and table.loc["#2", "overrides"] == "max_length 64 (card: 128)"
    assert table.loc["#1", "verification"] == "NOT reproduced by #4"
    assert table.loc["#2", "verification"] == "not re-run yet"
    assert table.loc["#3", "verification"] == "re-run of the card: reproduced"
    assert table.loc["#4", "verification"] == "re-run of #1: NOT reproduced (2 differences)"
    assert table.loc["#5", "protocol"] == "not recorded"
    assert table.loc["#5", "verification"] == "no protocol: cannot be re-run"
    assert list(table["accuracy"]) == [0.83, 0.83, 0.7, 0.83, 0.8, 0.9]


def test_a_card_rerun_of_other_data_does_not_count_for_the_cards_figures():
    versions = _versions()
    other = _protocol(data="20ng:test")
    versions[0]["evaluations"] = [_evaluation(1, other, 0.5, {"of_card": True, "reproduced": False, "differences": []})]
    table = eval_views.evaluations_table(versions).set_index("evaluation")
    assert table.loc["card", "verification"] == "not re-run yet"


def test_an_unreadable_protocol_is_said_not_raised():
    versions = [{"version": "1.0.0", "card": {"evaluation": {"protocol": {"task": 1}}},
                 "evaluations": [{"id": 1, "dataset": "d", "metrics": {"accuracy": 1.0}, "protocol": {"scoring": "x"}}]}]
    table = eval_views.evaluations_table(versions)
    assert list(table["evaluation"]) == ["#1"] and table["protocol"][0].startswith("unreadable protocol: ")
    assert eval_views.reproducible(versions[0]) == []
    assert eval_views.evaluations_table([]).empty


def test_reproduce_offers_the_cards_figures_and_each_evaluation_with_a_protocol():
    items = eval_views.reproducible(_versions()[0])
    assert [(i["key"], i["of"]) for i in items] == [("card-1.0.0", "card"), ("ev-1", 1), ("ev-2", 2), ("ev-3", 3),
                                                    ("ev-4", 4)]
    assert items[0]["evaluation"] is None and items[1]["evaluation"]["id"] == 1
    assert items[0]["label"].startswith("the card's figures of 1.0.0: classification by the head's argmax")
    assert eval_views.recorded_of(items[1]["evaluation"]) == {
        "metrics": {"accuracy": 0.83}, "confusion_matrix": [[2, 1], [0, 3]], "data_sha256": "a" * 64}
