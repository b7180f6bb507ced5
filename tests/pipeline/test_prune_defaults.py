"""What a build prunes with when it is not told: CPLI on Fisher-per-MAC widths with data, a
PyTorch model and a MACs budget; the classic one-shot L1 uniform otherwise."""
from __future__ import annotations

import pytest

from deploypipe.cli import build_parser
from deploypipe.cli.build import config_from_args
from deploypipe.pipeline.build import stage_keys
from deploypipe.pipeline.config import BuildConfig, DataOptions, PruneOptions
from deploypipe.prune.budget import Budget
from deploypipe.targets import load_target

DATA_DRIVEN = ("cpli", "fisher", "per-cost")
CLASSIC = ("oneshot", "l1", "uniform")


def chosen(prune: PruneOptions) -> tuple[str, str, str]:
    return prune.method, prune.importance, prune.allocation


def test_with_data_a_torch_model_and_a_macs_budget_the_build_takes_cpli_on_fisher_per_mac():
    prune = PruneOptions().chosen(data=True, torch_model=True, budget_kind="macs")
    assert chosen(prune) == DATA_DRIVEN
    assert "default" in prune.chosen_by and "--method oneshot" in prune.chosen_by  # says how to opt out


@pytest.mark.parametrize("data,torch_model,kind", [
    (False, True, "macs"),  # no gradients to score by
    (True, False, "macs"),  # an ONNX file: weights only
    (True, True, "params"), (True, True, "ratio"), (True, True, "latency"),  # not measured there
])
def test_without_one_of_them_the_classic_default_holds(data, torch_model, kind):
    prune = PruneOptions().chosen(data=data, torch_model=torch_model, budget_kind=kind)
    assert chosen(prune) == CLASSIC and prune.chosen_by is None


@pytest.mark.parametrize("given,expected", [
    ({"method": "cpli"}, ("cpli", "l1", "uniform")),
    ({"importance": "taylor"}, ("oneshot", "taylor", "uniform")),
    ({"allocation": "global"}, ("oneshot", "l1", "global")),
])
def test_one_option_given_fills_the_others_with_the_classic_default(given, expected):
    """A user who names one of the three asked for that combination, as before the default
    changed; the data-driven default is all three or none."""
    prune = PruneOptions(**given).chosen(data=True, torch_model=True, budget_kind="macs")
    assert chosen(prune) == expected and prune.chosen_by is None


def test_a_build_config_resolves_its_defaults():
    with_data = BuildConfig("zoo:resnet20", data=DataOptions("digits"))
    assert chosen(with_data.prune) == DATA_DRIVEN and with_data.prune.chosen_by
    assert chosen(BuildConfig("model.pt").prune) == CLASSIC  # no data
    assert chosen(BuildConfig("model.onnx", data=DataOptions("digits")).prune) == CLASSIC
    assert chosen(BuildConfig("model.pt", budget=Budget.parse("latency", 0.5), data=DataOptions("digits")).prune) \
        == CLASSIC


def test_a_copy_with_another_budget_or_data_decides_again():
    """``dataclasses.replace`` on a resolved config chooses the defaulted options again (it
    used to keep CPLI, and a ``chosen_by`` naming a MACs budget, under a params budget);
    options the caller gave stay given."""
    import dataclasses

    with_data = BuildConfig("zoo:resnet20", data=DataOptions("digits"))
    params = dataclasses.replace(with_data, budget=Budget.parse("params", "2x"))
    assert chosen(params.prune) == CLASSIC and params.prune.chosen_by is None
    again = dataclasses.replace(params, budget=Budget.parse("macs", "3x"))
    assert chosen(again.prune) == DATA_DRIVEN and again.prune.chosen_by
    assert chosen(dataclasses.replace(with_data, data=DataOptions()).prune) == CLASSIC
    given = BuildConfig("zoo:resnet20", data=DataOptions("digits"), prune=PruneOptions(importance="taylor"))
    assert chosen(dataclasses.replace(given, data=DataOptions()).prune) == ("oneshot", "taylor", "uniform")
    assert chosen(dataclasses.replace(given, budget=Budget.parse("params", "2x")).prune) == ("oneshot", "taylor", "uniform")
    # an option the caller sets on a resolved config is given, even where the build had filled one in
    fbs = dataclasses.replace(with_data, prune=dataclasses.replace(with_data.prune, method="fbs"))
    assert chosen(fbs.prune) == ("fbs", "l1", "uniform") and fbs.prune.chosen_by is None


def cli_config(*argv: str):
    return config_from_args(build_parser().parse_args(["build", *argv, "-o", "out"]), list(argv))


def test_the_command_line_default_and_its_opt_out():
    assert chosen(cli_config("model.pt", "--dataset", "digits").prune) == DATA_DRIVEN  # 2x MACs by default
    assert chosen(cli_config("model.pt", "--dataset", "digits", "--macs-budget", "3x").prune) == DATA_DRIVEN
    assert chosen(cli_config("model.pt", "--dataset", "digits", "--method", "oneshot", "--importance", "l1",
                             "--allocation", "uniform").prune) == CLASSIC
    assert chosen(cli_config("model.pt", "--dataset", "digits", "--latency-ratio", "0.5").prune) == CLASSIC
    assert chosen(cli_config("model.pt", "--macs-budget", "2x").prune) == CLASSIC


def test_resuming_does_not_depend_on_whether_the_default_was_chosen_or_spelled_out():
    """The same pruning is the same stage: a run built by default resumes under the spelled-out
    options (``chosen_by`` is a note in the report, not an input)."""
    target = load_target("cpu")
    by_default = cli_config("model.pt", "--dataset", "digits")
    spelled = cli_config("model.pt", "--dataset", "digits", "--method", "cpli", "--importance", "fisher",
                         "--allocation", "per-cost")
    assert by_default.prune.chosen_by and spelled.prune.chosen_by is None
    assert stage_keys(by_default, target)[0] == stage_keys(spelled, target)[0]
    classic = cli_config("model.pt", "--dataset", "digits", "--method", "oneshot", "--importance", "l1",
                         "--allocation", "uniform")
    assert stage_keys(classic, target)[0]["prune"] != stage_keys(spelled, target)[0]["prune"]
