"""The pure view helpers: sizes, headline metrics, metric history, alias moves, config diffs."""

from __future__ import annotations

from adapterhub.web import views


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
