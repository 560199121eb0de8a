"""Attack hyper-parameters are declared parameters (bench/hyper.py): reachable, validated, defaulted per profile,
absent from the run id while at their defaults, shown by `bench list -v` and in leaderboard labels."""

from __future__ import annotations

from pathlib import Path
import pytest
import torch
from click.testing import CliRunner

from bench import registry
from bench.compat import make_attack
from bench.contract import smoke_data
from bench.errors import BenchError
from bench.hyper import HyperParam, apply, declare, split_given, stage_steps
from bench.params import Param, format_value, label
from bench.plugins import FitContext
from bench.profiles import get_profile
from bench.report.leaderboard import _params
from bench.run.plan import RunRequest, plan

TOY = {
    "smoke": {"image_size": 32, "widths": [8, 16], "batch_size": 4, "a_steps": 4, "b_steps": 4, "lr": 1e-3,
              "decay": "none", "adversarial": True, "bn_batches": 4, "lambda_adv": 0.02, "enc": [[16, 5]]},
    "cpu": {"image_size": 64, "widths": [16, 32, 64], "batch_size": 8, "a_steps": 400, "b_steps": 240, "lr": 1e-3,
            "decay": "cosine", "adversarial": False, "bn_batches": 0, "lambda_adv": 0.02, "enc": [[48, 5]],
            "betas": [0.5, 0.999]},
}
DECLARED = {**declare(TOY, help={"widths": "encoder widths"}), **stage_steps(TOY, ("a_steps", "b_steps")),
            "c": Param(float, 1.0, "a plain parameter")}


def test_declare_infers_types_and_per_profile_defaults() -> None:
    assert "image_size" not in DECLARED  # geometry follows the run profile
    assert "enc" not in DECLARED  # nested lists stay profile-only
    w = DECLARED["widths"]
    assert isinstance(w, HyperParam) and w.type is list and w.item is int and w.help == "encoder widths"
    assert w.default_for("smoke") == [8, 16] and w.default_for("cpu") == [16, 32, 64]
    assert DECLARED["lr"].type is float and DECLARED["batch_size"].type is int
    assert DECLARED["decay"].choices == ("none", "cosine")
    assert DECLARED["adversarial"].type is bool
    assert DECLARED["bn_batches"].low == 0 and DECLARED["batch_size"].low == 1  # a profile uses 0: 0 is allowed
    assert DECLARED["lambda_adv"].help == "weight of the adversarial loss"
    assert DECLARED["steps"].default_for("smoke") == 4 and DECLARED["steps"].default_for("cpu") is None
    text = DECLARED["widths"].describe()
    assert "smoke 8/16" in text and "cpu 16/32/64" in text
    hash(DECLARED["widths"])  # hashable like every Param


def test_values_are_coerced_and_defaults_dropped() -> None:
    plain, over = split_given("attack 'toy'", DECLARED, {"lr": "0.001", "batch_size": "4", "widths": "8/16"}, "smoke")
    assert plain == {"c": 1.0} and over == {}  # every value given equals the smoke default
    plain, over = split_given("attack 'toy'", DECLARED, {"lr": "5e-4", "widths": "8/8/8", "c": "2",
                                                          "adversarial": "off"}, "smoke")
    assert plain == {"c": 2.0} and over == {"adversarial": False, "lr": 0.0005, "widths": [8, 8, 8]}
    assert apply(TOY["smoke"], over)["widths"] == [8, 8, 8] and apply(TOY["smoke"], over)["batch_size"] == 4


def test_steps_sets_every_stage() -> None:
    _, over = split_given("attack 'toy'", DECLARED, {"steps": "10"}, "smoke")
    assert over == {"a_steps": 10, "b_steps": 10}
    _, over = split_given("attack 'toy'", DECLARED, {"steps": "400"}, "cpu")
    assert over == {"b_steps": 400}  # a_steps is already 400 at cpu
    _, same = split_given("attack 'toy'", DECLARED, {"a_steps": "10", "b_steps": 10}, "smoke")
    assert same == {"a_steps": 10, "b_steps": 10}
    _, same = split_given("attack 'toy'", DECLARED, {"steps": 10, "a_steps": 10}, "smoke")
    assert same == {"a_steps": 10, "b_steps": 10}
    with pytest.raises(BenchError, match="steps=10 sets a_steps, b_steps, but a_steps=3 was also given"):
        split_given("attack 'toy'", DECLARED, {"steps": "10", "a_steps": "3"}, "smoke")


@pytest.mark.parametrize("given, words", [
    ({"stepz": "10"}, "attack 'toy' has no parameter stepz (did you mean steps?); its parameters: a_steps, "
                      "adversarial, b_steps"),
    ({"steps": "ten"}, "parameter steps='ten' is not a valid int"),
    ({"steps": "0"}, "steps='0' is out of range"),
    ({"widths": "8/x"}, "parameter widths='x' is not a valid int"),
    ({"decay": "linear"}, "choose one of none, cosine"),
    ({"betas": "0.9/0.99"}, "parameter betas is not used by profile 'smoke' (only by: cpu)"),
    ({"adversarial": "maybe"}, "adversarial='maybe' is not a valid bool"),
])
def test_bad_values_are_one_line_errors(given: dict[str, str], words: str) -> None:
    with pytest.raises(BenchError) as info:
        split_given("attack 'toy'", DECLARED, given, "smoke")
    assert words in str(info.value) and "\n" not in str(info.value)


def _all_defaults_as_text(cls: type, profile: str, but_stages: bool = False) -> dict[str, str]:
    """Every hyper-parameter of `cls` at its `profile` default, written as on the command line (without the per-stage
    step counts with `but_stages`)."""
    stages = {s for p in cls.params.values() if isinstance(p, HyperParam) for s in p.stages} if but_stages else set()
    out = {}
    for key, p in cls.params.items():
        if key in stages:
            continue
        if isinstance(p, HyperParam) and not p.stages and any(n == profile for n, _ in p.defaults):
            out[key] = format_value(p.default_for(profile))
    return out


@pytest.mark.parametrize("name", [e.name for e in registry.attacks if e.source == "builtin"])
def test_defaults_keep_the_run_id(name: str) -> None:
    """Nothing given, or every hyper-parameter given at its default: one config (the attack's part of the run spec),
    with no `overrides` key and only the plain parameters under `params` (and the plain parameters the attack had
    before, at their old default: `legacy_params`), i.e. the configuration (and run id) of the time before
    hyper-parameters were declared."""
    cls = registry.attacks.get(name).obj
    for profile in ("smoke", "cpu"):
        size = get_profile(profile).image_size
        bare = make_attack(cls, profile, size).config()
        assert "overrides" not in bare
        assert set(bare["params"]) == ({k for k, p in cls.params.items() if not isinstance(p, HyperParam)}
                                       | set(cls.legacy_params))
        explicit = make_attack(cls, profile, size, params=_all_defaults_as_text(cls, profile)).config()
        assert explicit == bare


def test_cfgan_steps_reaches_training_and_the_run_id() -> None:
    from bench.attacks.sift_inversion.cfgan import PROFILES

    bare = plan(RunRequest(attack="cfgan", profile="smoke", metrics=("mse",)))
    assert bare.attack.hp == PROFILES["smoke"]
    p = plan(RunRequest(attack="cfgan", profile="smoke", metrics=("mse",), attack_params={"steps": "10"}))
    assert p.attack.hp["coarse_steps"] == 10 and p.attack.hp["fine_steps"] == 10
    assert p.spec.attack_config["overrides"] == {"coarse_steps": 10, "fine_steps": 10}
    assert p.spec.attack_config["hyper"]["coarse_steps"] == 10
    assert p.spec.run_id != bare.spec.run_id and p.spec.config_id != bare.spec.config_id
    widths = plan(RunRequest(attack="cfgan", profile="smoke", metrics=("mse",),
                             attack_params={"enc_widths": "8/8/8/8"}))
    assert widths.attack.net_cfg.enc_widths == (8, 8, 8, 8)  # widths reach the networks
    assert _params(p.spec.attack_config) == {"coarse_steps": 10, "fine_steps": 10}
    assert _params(bare.spec.attack_config) == {}
    assert label("cfgan", _params(widths.spec.attack_config)) == "cfgan(enc_widths=8/8/8/8)"


def test_sli_l_classifier_parameters_are_prefixed() -> None:
    p = plan(RunRequest(attack="sli-l", profile="smoke", metrics=("mse",),
                        attack_params={"classifier_steps": "3", "steps": "2"}))
    assert p.attack.chp["steps"] == 3 and p.attack.hp["lbp_steps"] == 2 and p.attack.hp["image_steps"] == 2


def test_sli_b_has_no_lbp_stage_parameter() -> None:
    p = plan(RunRequest(attack="sli-b", profile="smoke", metrics=("mse",), attack_params={"steps": "2"}))
    assert p.spec.attack_config["overrides"] == {"image_steps": 2}
    with pytest.raises(BenchError, match="has no parameter lbp_steps"):
        plan(RunRequest(attack="sli-b", profile="smoke", metrics=("mse",), attack_params={"lbp_steps": "2"}))


@pytest.mark.parametrize("name", ["cfgan", "sli"])
def test_defaults_given_explicitly_train_bit_identically(name: str) -> None:
    """Every hyper-parameter given as text at its default trains the same bits as nothing given (one step per
    stage, to stay cheap)."""
    data = smoke_data(n_train=6, n_test=2)
    cls = registry.attacks.get(name).obj
    outs = []
    for params in ({"steps": 1}, {**_all_defaults_as_text(cls, "smoke", but_stages=True), "steps": "1"}):
        torch.manual_seed(0)
        a = cls(profile="smoke", image_size=data["profile"].image_size, seed=0, params=params)
        a.fit(data["aux"], data["aux_images"], FitContext(defense=data["defense"], seed=0,
                                                           device=torch.device("cpu"), progress=False))
        outs.append(a.reconstruct(data["private"], progress=False))
    assert torch.equal(outs[0], outs[1])


def test_grid_item_and_list_verbose(tmp_path: Path) -> None:
    import click

    from bench.cli.grid import grid_cmd
    from bench.cli.lists import list_cmd

    group = click.Group()
    group.add_command(grid_cmd, "grid")
    group.add_command(list_cmd, "list")
    listed = CliRunner().invoke(group, ["list", "attacks", "-v"])
    assert listed.exit_code == 0, listed.output
    assert ("steps: int >= 1, per profile: smoke 4, cpu (per stage), paper 90000 - steps of every stage "
            "(sets coarse_steps, fine_steps)") in listed.output
    bad = CliRunner().invoke(group, ["grid", "--attacks", "cfgan:stepz=1", "--profile", "smoke",
                                     "--results", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "has no parameter stepz" in bad.output
    assert not (tmp_path / "bad" / "runs").exists()  # refused before any work
    out = CliRunner().invoke(group, ["grid", "--attacks", "cfgan:steps=1", "--profile", "smoke", "--n-train", "4",
                                     "--n-test", "2", "--metrics", "mse", "--threads", "1", "--quiet",
                                     "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    board = (tmp_path / "leaderboards" / "synthetic-faces.csv").read_text()
    assert "cfgan(coarse_steps=1,fine_steps=1)" in board



def test_contract_kit_checks_every_profile_default() -> None:
    from bench.contract import _declared_params

    class Toy:
        name = "toy"
        params = declare(TOY, low={"batch_size": 5})  # the smoke default (4) is below it, cpu's (8) is not

    with pytest.raises(AssertionError, match="default of 'batch_size' at profile smoke fails its own validation"):
        _declared_params(Toy, lambda: None)

    class Staged:
        name = "staged"
        params = {**declare(TOY), **stage_steps(TOY, ("a_steps", "b_steps"))}  # steps at cpu: None (per stage)

    with pytest.raises(AssertionError, match="an unknown parameter was accepted silently"):
        _declared_params(Staged, lambda: None)  # every default passed; only the stand-in for the unknown check fails
