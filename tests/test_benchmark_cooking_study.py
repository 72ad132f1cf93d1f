"""The cooking study script (python -m marl.benchmarks.cooking_populations) at its quick sizes: every step
runs, the summary holds what the results README reads, and the ledger makes a re-run continue, not repeat."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pytest

from marl.benchmarks import cooking_populations as study

pytestmark = pytest.mark.usefixtures("one_thread")
# Episodes of 48 steps, not the kitchen's 200: the held-out evaluations play whole episodes and were most of
# this file's time (119 s -> 49 s, measured beside two busy cores). Toy-trained cooks deliver no dish in 48
# steps, so the RL extraction takes its no-label path (warned; its labelled path is tested in
# test_population_extract.py).
QUICK_HORIZON = 48


def _args(tmp_path, **changes) -> argparse.Namespace:
    args = dict(
        seeds=[0],
        jobs=0,
        scale=1.0,
        precision="float32",
        quick=True,
        threads=1,
        kitchen=["observe_partner_cell=false", f"max_steps={QUICK_HORIZON}"],
        xp_warmup=study.XP_WARMUP,
        xp_gate=False,
        xp_gate_margin=study.XP_GATE_MARGIN,
        generalist_kitchen=[],
        extract_kitchen=[],
        retrain=[],
        summary=False,
        runs=str(tmp_path / "runs"),
        out=str(tmp_path / "out"),
    )
    return argparse.Namespace(**{**args, **changes})


@pytest.mark.filterwarnings("ignore:Teacher member.*never ended a self-play episode with a label")
def test_quick_study_runs_every_step_and_a_rerun_continues_it(tmp_path, monkeypatch):
    steps = ("train_population", "extract_population", "evaluate_population", "train_generalist")
    originals = {step: getattr(study, step) for step in steps}
    order = []  # which steps ran, in order: each once what it needs is done, XP-min's chain early
    for step, original in originals.items():
        monkeypatch.setattr(
            study, step, lambda *a, _f=original, _n=step: order.append((_n, *a[:2])) or _f(*a)
        )
    summary = study.run_study(_args(tmp_path))
    monkeypatch.undo()
    trained = [a[1:] for a in order if a[0] == "train_population"]
    assert trained == [
        ("xpmin", 0),
        ("specialists", study.HELD_OUT_SEED),
        ("selfplay", 0),
        ("specialists", 0),
    ]
    evaluated_first = next(i for i, a in enumerate(order) if a[0] == "evaluate_population")
    assert evaluated_first < order.index(("train_population", "specialists", 0))  # D, S, O before the oracle
    assert "xpmin-seed0" in str(order[evaluated_first][1])  # XP-min's D, S, O (a minute) before self-play
    assert evaluated_first < order.index(("train_population", "selfplay", 0))  # trains (a long step)
    assert order[-1][0] == "train_generalist" and len(order) == 16

    names = [row["population"] for row in summary["rows"]]
    assert names == list(study.POPULATIONS)
    for row in summary["rows"]:
        assert row["members"] == (6 if row["population"] == "specialists" else 8)  # six recipes
        for key, _, _ in study.METRICS:
            assert len(row[key]["per_seed"]) == 1
        for key in study.PER_SEED:  # each seed's own interval comes along (null where undefined)
            assert len(row[key]["seed_intervals"]) == 1 and len(row[key]["seed_intervals"][0]) == 2
        assert row["population_frames"] > 0 and row["generalist_frames"] > 0
        sp = row["stages"]["self_play"]  # how far episodes got, stage by stage: never further than before
        assert list(sp) == list(study.STAGES)
        assert sp["chopped"] >= sp["plated"] >= sp["picked_up"] >= sp["delivered"] >= sp["success"]
        (curve,) = row["generalist_curve"]  # the held-out harmonic mean at each generalist evaluation
        steps = [frames for frames, _ in curve]
        assert len(curve) >= 2 and steps == sorted(steps) and steps[-1] == row["generalist_frames"]
        assert all(0.0 <= value <= 1.0 for _, value in curve)
        assert curve[-1][1] == pytest.approx(row["harmonic_mean"]["per_seed"][0])
    assert set(summary["claims"]) >= {"(b) XP-min O above 0", "(a) XP-min D above self-play's"}
    assert all(v["holds"] is None for v in summary["claims"].values())  # one seed: no interval over seeds
    claims = study.claims(  # two seeds' worth of intervals: a verdict
        {
            name: {key: {"low": 1.0, "high": 2.0} for key in ("diversity", "specialisation", "overfitness")}
            for name in ("xpmin", "selfplay", "extract-rl", "extract-dagger")
        },
        {name: {"low": 0.1, "high": 0.2} for name in summary["paired_differences"]},
    )
    assert claims["(b) XP-min O above 0"]["holds"] is True
    assert claims["(a) XP-min D above self-play's"]["holds"] is False  # the same interval: not apart
    assert claims["(a) XP-min D above self-play's (paired by seed)"]["holds"] is True  # differences > 0
    for file in ("summary.json", "table.md", "summary.png"):
        assert (tmp_path / "out" / file).stat().st_size > 0
    assert "The paper's claims" in (tmp_path / "out" / "table.md").read_text()
    assert "over its training" in (tmp_path / "out" / "table.md").read_text()

    ledger = json.loads((tmp_path / "runs" / "ledger.json").read_text())
    assert ledger["settings"] == {
        "mode": "quick",
        "scale": 1.0,
        "precision": "float32",
        "kitchen": ["observe_partner_cell=false", f"max_steps={QUICK_HORIZON}"],
        "xp_warmup": study.XP_WARMUP,
        "generalist_kitchen": [],
        "xp_gate": False,
        "extract_kitchen": [],
    }
    xpmin = Path(ledger["steps"]["xpmin/0"]["run"])  # the kitchen setting reached every population
    assert "observe_partner_cell: false" in (xpmin / "config.yaml").read_text()
    # held-out + 3 trained populations + 2 extractions + 5 generalists + 5 evaluations
    assert len(ledger["steps"]) == 16

    # A step missing from the ledger (interrupted after its run saved a checkpoint) continues that run: the
    # same directory comes back, and nothing else is repeated.
    finished = ledger["steps"].pop("selfplay/0")
    (tmp_path / "runs" / "ledger.json").write_text(json.dumps(ledger))

    def refuse(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    for step in ("extract_population", "evaluate_population", "train_generalist"):
        monkeypatch.setattr(study, step, refuse)
    again = study.run_study(_args(tmp_path))
    redone = json.loads((tmp_path / "runs" / "ledger.json").read_text())["steps"]["selfplay/0"]
    assert redone["run"] == finished["run"] and redone["frames"] == finished["frames"]
    assert json.dumps(again["rows"]) == json.dumps(summary["rows"])  # (NaN == NaN as text)

    with pytest.raises(SystemExit, match="bfloat16"):  # another study's settings in the same folder
        study.run_study(_args(tmp_path, precision="bfloat16"))
    with pytest.raises(SystemExit, match="'xp_warmup': 0.0"):
        study.run_study(_args(tmp_path, xp_warmup=0.0))
    saved = json.loads((tmp_path / "runs" / "ledger.json").read_text())
    del saved["settings"]["xp_warmup"]  # a ledger from before the setting: the default warm-up continues it
    (tmp_path / "runs" / "ledger.json").write_text(json.dumps(saved))
    monkeypatch.setattr(study, "train_population", refuse)
    assert json.dumps(study.run_study(_args(tmp_path))["rows"]) == json.dumps(summary["rows"])

    # --retrain selfplay: its population, evaluation and generalist train again, nothing else; the old runs
    # are kept aside, where no interrupted step takes them up; every step says which code ran it
    ran = []
    for step, original in originals.items():
        monkeypatch.setattr(study, step, lambda *a, _f=original, _n=step: ran.append(_n) or _f(*a))
    retrained = study.run_study(_args(tmp_path, retrain=["selfplay"]))
    assert sorted(ran) == ["evaluate_population", "train_generalist", "train_population"]
    steps_now = json.loads((tmp_path / "runs" / "ledger.json").read_text())["steps"]
    assert len(steps_now) == 16 and steps_now["selfplay/0"]["run"] != finished["run"]
    assert (tmp_path / "runs" / "superseded" / Path(finished["run"]).name / "config.yaml").exists()
    assert all("commit" in step for step in steps_now.values())
    assert sum(len(names) for names in retrained["commits"].values()) == 16

    # --summary: nothing runs; what the ledger holds so far is summarised, the rest is n/a and listed
    saved = json.loads((tmp_path / "runs" / "ledger.json").read_text())
    for name in ("evaluate-selfplay/0", "generalist-extract-rl/0"):
        del saved["steps"][name]
    (tmp_path / "runs" / "ledger.json").write_text(json.dumps(saved))
    for step in originals:
        monkeypatch.setattr(study, step, refuse)
    partial = study.run_study(_args(tmp_path, summary=True))
    assert partial["unfinished_steps"] == ["evaluate-selfplay/0", "generalist-extract-rl/0"]
    rows = {row["population"]: row for row in partial["rows"]}
    assert rows["selfplay"]["diversity"]["per_seed"] == [None] and rows["selfplay"]["sp_label"] == [None]
    assert rows["extract-rl"]["harmonic_mean"]["per_seed"] == [None]
    assert rows["xpmin"]["diversity"]["per_seed"] == retrained["rows"][2]["diversity"]["per_seed"]
    written = (tmp_path / "out" / "table.md").read_text()
    assert "Not finished yet (n/a above): evaluate-selfplay/0, generalist-extract-rl/0." in written


def test_retrain_of_an_extraction_forgets_it_and_what_is_built_on_it_only(tmp_path):
    settings = study.Settings(runs=str(tmp_path), mode="quick", scale=1.0, precision="float32")
    ledger = study.Ledger(tmp_path / "ledger.json", settings)
    names = ["xpmin/0", "extract-rl/0", "extract-dagger/0", "extract-rl/1"]
    names = [f"{kind}{name}" for name in names for kind in ("", "evaluate-", "generalist-")]
    for name in names:
        run = tmp_path / (name.replace("/", "-seed").replace("evaluate-", "") + "-20261205-120000")
        run.mkdir(exist_ok=True)
        ledger.done[name] = {"run": str(run)}
    forgotten = ledger.retrain("extract-rl", [0])
    assert forgotten == ["extract-rl/0", "evaluate-extract-rl/0", "generalist-extract-rl/0"]
    assert sorted(set(names) - set(ledger.done)) == sorted(forgotten)
    moved = sorted(path.name for path in (tmp_path / "superseded").iterdir())
    assert moved == ["extract-rl-seed0-20261205-120000", "generalist-extract-rl-seed0-20261205-120000"]
    assert (tmp_path / "extract-rl-seed1-20261205-120000").exists()


def _record_config_and_stop(seen: list):
    """A stand-in for a training function: records the config it was given and stops at once."""

    def stop(cfg, resume=None):
        seen.append(cfg)
        raise KeyboardInterrupt

    return stop


def test_generalist_kitchen_reaches_the_generalists_and_the_ledger(tmp_path, monkeypatch):
    import marl.population.generalist as generalist

    settings = study.Settings(
        runs=str(tmp_path), mode="quick", scale=1.0, precision="float32", generalist_kitchen=("retry=true",)
    )
    seen = []
    monkeypatch.setattr(generalist, "train_generalist", _record_config_and_stop(seen))
    with pytest.raises(KeyboardInterrupt):
        study.train_generalist("runs/partners", "runs/held_out", 0, settings, "generalist-x-seed0")
    assert seen[0].env.kwargs == {"retry": True}

    study.Ledger(tmp_path / "ledger.json", settings).save()
    with pytest.raises(SystemExit, match="generalist_kitchen"):  # another study in the same folder
        study.Ledger(tmp_path / "ledger.json", study.Settings(str(tmp_path), "quick", 1.0, "float32"))
    note = study.generalist_kitchen_note(["retry=true"])
    assert "retry=true" in note and study.generalist_kitchen_note([]) == ""


def test_xp_gate_reaches_xpmin_and_the_ledger(tmp_path, monkeypatch):
    import marl.population.xpmin as xpmin

    settings = study.Settings(runs=str(tmp_path), mode="quick", scale=1.0, precision="float32", xp_gate=True)
    seen = []
    monkeypatch.setattr(xpmin, "train", _record_config_and_stop(seen))
    with pytest.raises(KeyboardInterrupt):
        study.train_population("xpmin", 0, settings)
    assert seen[0].population.xp_gate is True
    assert seen[0].population.xp_gate_margin == study.XP_GATE_MARGIN
    study.Ledger(tmp_path / "ledger.json", settings).save()
    with pytest.raises(SystemExit, match="xp_gate"):  # an ungated study does not continue a gated one
        study.Ledger(tmp_path / "ledger.json", study.Settings(str(tmp_path), "quick", 1.0, "float32"))
    exact = study.Settings(str(tmp_path), "quick", 1.0, "float32", xp_gate=True, xp_gate_margin=0.0)
    with pytest.raises(SystemExit, match="xp_gate_margin"):  # nor one gated exactly a gated one with margin
        study.Ledger(tmp_path / "ledger.json", exact)


def test_a_ledger_from_before_the_gate_margin_continues_as_it_ran(tmp_path):
    """Ledgers written before the margin existed: gated ones ran the exact gate (margin 0); ungated ones
    continue whatever the margin, which only the gate reads."""
    gated = study.Settings(str(tmp_path), "quick", 1.0, "float32", xp_gate=True, xp_gate_margin=0.0)
    ledger = study.Ledger(tmp_path / "ledger.json", gated)
    del ledger.settings["xp_gate_margin"]
    ledger.save()
    study.Ledger(tmp_path / "ledger.json", gated)  # continues
    with pytest.raises(SystemExit, match="xp_gate_margin"):
        study.Ledger(
            tmp_path / "ledger.json", study.Settings(str(tmp_path), "quick", 1.0, "float32", xp_gate=True)
        )
    ungated = tmp_path / "ungated"
    ungated.mkdir()
    old = study.Ledger(ungated / "ledger.json", study.Settings(str(ungated), "quick", 1.0, "float32"))
    old.save()
    study.Ledger(
        ungated / "ledger.json", study.Settings(str(ungated), "quick", 1.0, "float32", xp_gate_margin=0.1)
    )


def test_extract_kitchen_reaches_the_rl_students_only_and_the_ledger(tmp_path, monkeypatch):
    """--extract-kitchen shaping=paying: the RL extraction's students get it (parsed as YAML values), the
    DAgger students do not; the ledger keeps it, so a study without it does not continue this one."""
    import marl.population.extract as extraction

    settings = study.Settings(
        runs=str(tmp_path), mode="quick", scale=1.0, precision="float32", extract_kitchen=("shaping=paying",)
    )
    calls = []
    monkeypatch.setattr(extraction, "extract", lambda *a, **kwargs: calls.append(kwargs) or tmp_path)
    monkeypatch.setattr(study, "_cost", lambda run: {"run": str(run)})
    study.extract_population("rl", "teacher", 0, settings)
    study.extract_population("dagger", "teacher", 0, settings)
    assert calls[0]["student_env"] == {"shaping": "paying"} and "student_env" not in calls[1]
    assert study.kitchen_settings(("retry=true", "layout=pairs_even")) == {
        "retry": True,
        "layout": "pairs_even",
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        study.kitchen_settings(("shaping",))
    study.Ledger(tmp_path / "ledger.json", settings).save()
    with pytest.raises(SystemExit, match="extract_kitchen"):
        study.Ledger(tmp_path / "ledger.json", study.Settings(str(tmp_path), "quick", 1.0, "float32"))
    assert "shaping=paying" in study.extract_kitchen_note(["shaping=paying"])
    # every generalist plays the study's kitchen: what only the students changed goes back to its default
    both = study.Settings(
        str(tmp_path),
        "quick",
        1.0,
        "float32",
        generalist_kitchen=("retry=true",),
        extract_kitchen=("shaping=paying",),
    )
    assert study.generalist_env(both) == {"shaping": "any", "retry": True}


def test_specialists_are_one_per_recipe_of_the_studys_kitchen(tmp_path):
    classic = study.Settings(runs=str(tmp_path / "classic"), mode="quick", scale=1.0, precision="float32")
    pairs = study.Settings(
        runs=str(tmp_path / "pairs"),
        mode="quick",
        scale=1.0,
        precision="float32",
        kitchen=("layout=pairs", "blind=true"),
    )
    for kitchen, recipes in ((classic, 6), (pairs, 4)):
        run = Path(study.train_population("specialists", 0, kitchen)["run"])
        summary = json.loads((run / "population.json").read_text())
        assert len(summary["sp_labels"]) == recipes, kitchen.kitchen


def test_unfinished_run_is_the_newest_with_a_checkpoint(tmp_path):
    for name, checkpoint in (
        ("xpmin-seed0-20261201-000000", True),
        ("xpmin-seed0-20261202-000000", True),
        ("xpmin-seed0-20261203-000000", False),  # started, no checkpoint yet: starts over
        ("xpmin-seed1-20261204-000000", True),
    ):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        if checkpoint:
            (tmp_path / name / "checkpoints" / "iteration_1.pt").write_bytes(b"")
    assert study.unfinished_run(str(tmp_path), "xpmin-seed0").name == "xpmin-seed0-20261202-000000"
    assert study.unfinished_run(str(tmp_path), "selfplay-seed0") is None


def test_cross_play_by_recipe_splits_pairs_by_their_self_play_recipes():
    evaluation = {
        "sp_label": [0, 0, 1, -1],  # member 3 delivers no recipe: left out
        "xp_success": [
            [1.0, 0.8, 0.1, 0.5],
            [0.6, 1.0, 0.3, 0.5],
            [0.2, 0.4, 1.0, 0.5],
            [0.5, 0.5, 0.5, 0.0],
        ],
    }
    split = study.by_recipe(evaluation)
    assert split["same"] == pytest.approx((0.8 + 0.6) / 2)
    assert split["different"] == pytest.approx((0.1 + 0.3 + 0.2 + 0.4) / 4)
    assert study.by_recipe({"sp_label": [0, 1], "xp_success": [[1, 0], [0, 1]]})["same"] is None


def test_order_following_names_the_members_that_deliver_the_order_above_chance():
    """With orders drawn from 4 recipes, a pair that ignores them delivers the order in success / 4 of its
    episodes; member 0 (20 of 32) follows it, member 1 (8 of 32) and member 2 (cooks nothing) do not."""
    on_order = [[20 / 32, 0.0, 0.0], [0.0, 8 / 32, 0.0], [0.0, 0.0, 0.0]]
    evaluation = {"sp_success": [1.0, 1.0, 0.0], "xp_outcomes": {"on_order": on_order}}
    following = study.order_following(evaluation, recipes=4, episodes=32)
    assert following["followers"] == [0]
    assert following["on_order"] == [20 / 32, 8 / 32, 0.0] and following["chance"] == [0.25, 0.25, 0.0]
    assert study.order_following({"sp_success": [1.0], "xp_outcomes": {}}, 4, 32) is None  # no orders
    assert study.binomial_tail(0, 10, 0.3) == pytest.approx(1.0)
    assert study.binomial_tail(10, 10, 0.5) == pytest.approx(0.5**10)
    assert study.binomial_tail(2, 3, 0.5) == pytest.approx(0.5)


def test_stages_report_the_lamp_only_where_the_kitchen_has_one():
    """Each stage is the fraction of self-play (diagonal) and cross-play (off-diagonal) episodes that
    reached it, over seeds; a kitchen with lamps adds how often a pair lit one."""
    plain = {stage: [[1.0, 0.0], [0.0, 0.5]] for stage in study.STAGES}
    lamp = plain | {study.LAMP: [[1.0, 0.25], [0.75, 1.0]]}
    assert list(study.stages([{"xp_outcomes": plain}])["self_play"]) == list(study.STAGES)
    out = study.stages([{"xp_outcomes": lamp}, {"xp_outcomes": lamp}])
    assert out["self_play"][study.LAMP] == 1.0 and out["cross_play"][study.LAMP] == 0.5
    assert out["self_play"]["success"] == 0.75 and out["cross_play"]["success"] == 0.0


def test_intervals_over_seeds_stay_within_each_measures_range():
    """Over three seeds a t-interval of a success rate reaches past [0, 1] (0, 0.1, 0.99: about -0.99 to
    1.72); the summary cuts it to the range, and leaves an interval inside the range as it is."""
    from marl.intervals import mean_interval

    spread = study.within_range([0.0, 0.1, 0.99], *study.RANGES["harmonic_mean"])
    mean, t_low, t_high = mean_interval([0.0, 0.1, 0.99])
    assert t_low < 0 and t_high > 1  # the uncut interval is impossible on both sides
    assert (spread["mean"], spread["low"], spread["high"]) == (pytest.approx(mean), 0.0, 1.0)
    assert spread["per_seed"] == [0.0, 0.1, 0.99]
    inside = study.within_range([1.21, 0.97, None, 1.26], *study.RANGES["diversity"])  # None: unfinished
    assert (inside["low"], inside["high"]) == pytest.approx(mean_interval([1.21, 0.97, 1.26])[1:])
    # a paired difference of success rates lies in [-1, 1]; of diversities it is unbounded
    assert study.difference_range("harmonic_mean") == (-1.0, 1.0)
    assert study.difference_range("diversity") == (None, None)
    assert study.within_range([-0.9, 0.9, 0.95], *study.difference_range("success_mean"))["low"] == -1.0
    one_seed = study.within_range([0.5], 0.0, 1.0)
    assert one_seed["mean"] == 0.5 and all(v != v for v in (one_seed["low"], one_seed["high"]))  # NaN


def test_an_earlier_summary_is_judged_again_from_its_per_seed_values(tmp_path):
    """--from-summary: a study whose runs are gone is judged by the current rules from the per-seed values
    its summary.json keeps; those stay as measured, every interval comes back inside its range, and the
    paired claims are added."""
    source = (
        Path(__file__).parents[1] / "results" / "cooking_populations" / "pairs_lamp_retry" / "summary.json"
    )
    earlier = json.loads(source.read_text())
    xpmin = next(row for row in earlier["rows"] if row["population"] == "xpmin")
    xpmin["harmonic_mean"].update(low=-0.23, high=0.37)  # as an earlier version wrote it: uncut
    del earlier["claims"]["(a) XP-min D above self-play's (paired by seed)"]
    (tmp_path / "summary.json").write_text(json.dumps(earlier))
    again = study.resummarise(tmp_path / "summary.json")
    for before, after in zip(earlier["rows"], again["rows"]):
        for key, _, _ in study.METRICS:
            if key in before:  # a measure added since is computed from the per-seed values kept
                assert after[key]["per_seed"] == before[key]["per_seed"]
            low, high = study.RANGES[key]
            interval = [after[key]["low"], after[key]["high"]]  # NaN where a measure has one seed
            assert low is None or math.isnan(interval[0]) or interval[0] >= low
            assert high is None or math.isnan(interval[1]) or interval[1] <= high
    rows = {row["population"]: row for row in again["rows"]}
    assert rows["xpmin"]["harmonic_mean"]["low"] == 0.0  # 0.21, 0.00, 0.00: the t-interval reaches -0.23
    assert "(a) XP-min D above self-play's (paired by seed)" in again["claims"]
    for name in ("xpmin", "extract-rl"):  # judged on XP-min's dishes, seed by seed
        expected = [
            study.covered_harmonic_mean(success, labels)
            for success, labels in zip(
                rows[name]["generalist_success_per_partner"], rows["xpmin"]["sp_label"], strict=True
            )
        ]
        assert rows[name]["harmonic_mean_covered"]["per_seed"] == expected
    assert "generalist HM on covered dishes: extract-rl - xpmin" in again["paired_differences"]
    assert "cut to the measure's range" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "summary.png").stat().st_size > 10_000


def test_covered_harmonic_mean_counts_only_the_dishes_a_capable_member_cooks():
    """A held-out specialist of a dish no member cooks (the 0.0 here) is left out; so is an incapable
    member's label (-1); with no dish covered, or unfinished steps, there is no value."""
    success = [1.0, 0.5, 0.25, 0.0]  # held-out specialist r cooks recipe r
    assert study.covered_harmonic_mean(success, [0, 1, 1, -1]) == pytest.approx(2 / (1 / 1.0 + 1 / 0.5))
    assert study.covered_harmonic_mean(success, [2, 0, 1, 2]) == pytest.approx(3 / (1 + 2 + 4))
    assert study.covered_harmonic_mean(success, [0, 3]) == 0.0  # a covered dish it fails
    assert study.covered_harmonic_mean(success, [-1, -1]) is None
    assert study.covered_harmonic_mean(None, [0, 1]) is None
    assert study.covered_harmonic_mean(success, None) is None


def test_a_named_study_sets_its_flags_and_a_given_flag_still_wins():
    from marl.benchmarks.cooking_populations import parse_arguments

    long_form = [
        "--xp-warmup", "0", "--xp-gate", "--xp-gate-margin", "0",
        "--kitchen", "layout=pairs_even", "blind=true", "observe_partner_cell=false", "signal=true",
        "retry=true",
        "--extract-kitchen", "shaping=paying",
        "--runs", "results/runs/pairs_even_paying", "--out", "results/cooking_populations/pairs_even_paying",
    ]  # fmt: skip
    named = vars(parse_arguments(["--study", "pairs_even_paying"])[1])
    assert {**named, "study": None} == vars(parse_arguments(long_form)[1])
    assert vars(parse_arguments([])[1])["kitchen"] == []  # no study: the classic kitchen
    overridden = parse_arguments(["--study", "pairs_even_paying", "--seeds", "3", "--out", "elsewhere"])[1]
    assert (overridden.seeds, overridden.out, overridden.xp_gate) == ([3], "elsewhere", True)
    with pytest.raises(SystemExit):
        parse_arguments(["--study", "no_such_study"])
    # the orders study is the same study with one change to the kitchen, its own folders
    orders = vars(parse_arguments(["--study", "pairs_even_orders"])[1])
    assert orders["kitchen"] == named["kitchen"] + ["order_bonus=5.0"]
    assert orders["runs"] != named["runs"] and orders["out"] != named["out"]
    assert (named["xp_gate_margin"], orders["xp_gate_margin"]) == (0.0, study.XP_GATE_MARGIN)  # as each ran
    changed = ("study", "kitchen", "runs", "out", "xp_gate_margin")
    same = {k: v for k, v in orders.items() if k not in changed}
    assert same == {k: v for k, v in named.items() if k in same}


def test_a_study_continues_from_its_recorded_ledger_on_a_machine_without_its_runs(tmp_path):
    """The ledger's copy in the results folder continues the study on a fresh clone: a finished seed keeps
    what it measured; a lost run that a step still to run needs is trained again first, with what the
    unfinished seed built on it, so each seed meets one set of held-out specialists and one teacher."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    settings = study.Settings(runs=str(runs), mode="quick", scale=1.0, precision="float32")
    ran: list[str] = []

    def make(name: str, *needed_runs: str) -> dict:
        assert all(Path(run).exists() for run in needed_runs)  # what it needs is on this machine
        ran.append(name)
        run = runs / f"{name.replace('/', '-')}-{len(ran)}"
        run.mkdir(parents=True)
        return {"run": str(run), "value": len(ran)}

    def step(name: str, *needs: str) -> study.Step:
        return study.Step(needs, make, (name, *needs))

    steps = {
        "held-out": step("held-out"),
        "xpmin/0": step("xpmin/0"),
        "evaluate-xpmin/0": step("evaluate-xpmin/0", "xpmin/0", "held-out"),
        "xpmin/1": step("xpmin/1"),
        "evaluate-xpmin/1": step("evaluate-xpmin/1", "xpmin/1", "held-out"),
    }
    ledger = study.Ledger(runs / "ledger.json", settings, record=out / "ledger.json")
    ledger.run(study.InlinePool(), steps, 1)
    first = json.loads((out / "ledger.json").read_text())["steps"]
    assert len(ran) == 5 and set(first) == set(steps)

    shutil.rmtree(runs)  # a fresh clone, and seed 1 gets a step it has not run
    steps["extract-rl/1"] = step("extract-rl/1", "xpmin/1")
    steps["generalist-extract-rl/1"] = step("generalist-extract-rl/1", "extract-rl/1", "held-out")
    ledger = study.Ledger(runs / "ledger.json", settings, record=out / "ledger.json")
    ledger.run(study.InlinePool(), steps, 1)
    # seed 0 is finished: kept; seed 1 runs again on its new teacher and held-out specialists
    assert sorted(ran[5:]) == sorted(["held-out", "xpmin/1", "evaluate-xpmin/1", *list(steps)[-2:]])
    assert ledger.done["evaluate-xpmin/0"] == first["evaluate-xpmin/0"]
    assert ledger.done["held-out"]["replaced"] == first["held-out"]
    assert ledger.done["evaluate-xpmin/1"]["replaced"] == first["evaluate-xpmin/1"]
    assert json.loads((runs / "ledger.json").read_text()) == json.loads((out / "ledger.json").read_text())
