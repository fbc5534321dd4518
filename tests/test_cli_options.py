"""The training options shared by fit, cv and demo, and the comma-separated list type."""

import click
import pytest
from click.testing import CliRunner
from mssoft.cli._common import COMMA_LIST, training_options, training_settings

from mssoft.workflows.settings import TrainingSettings

BASE = TrainingSettings(epochs=7, base_filters=4)


@click.command()
@click.option("--quick", is_flag=True)
@training_options(TrainingSettings(), strategies=("auto", "default"))
def probe(quick, **options):
    settings = training_settings(options, BASE if quick else TrainingSettings())
    assert not options  # every training option was consumed
    click.echo(repr(settings))


def run(*args):
    result = CliRunner().invoke(probe, list(args))
    assert result.exit_code == 0, result.output
    return eval(result.output.strip(), {"TrainingSettings": TrainingSettings})


def test_every_training_setting_but_eps_is_an_option():
    names = {p.name for p in probe.params}
    fields = set(TrainingSettings().settings())
    assert fields - names == {"eps"}


def test_defaults_and_given_values():
    assert run() == TrainingSettings()
    got = run("--epochs", "3", "--modalities", "flair, t2", "--mixed-precision")
    assert got == TrainingSettings(epochs=3, modalities=("flair", "t2"), mixed_precision=True)


def test_values_not_given_come_from_the_base_settings():
    assert run("--quick") == BASE
    assert run("--quick", "--epochs", "30") == TrainingSettings(epochs=30, base_filters=4)


def test_strategy_choices_are_per_command():
    result = CliRunner().invoke(probe, ["--strategy", "multiworker"])
    assert result.exit_code == 2 and "multiworker" in result.output


@pytest.mark.parametrize(
    ("text", "expected"), [("a,b", ("a", "b")), (" a , ,b ", ("a", "b")), ("x", ("x",))]
)
def test_comma_list(text, expected):
    assert COMMA_LIST.convert(text, None, None) == expected


def test_empty_comma_list_is_an_error():
    with pytest.raises(click.BadParameter):
        COMMA_LIST.convert(" , ", None, None)


def test_soft_mask_options_reach_every_command_that_builds_masks():
    import click
    from mssoft.cli.main import cli

    def options(command):
        return {p.name for p in cli.get_command(click.Context(cli), command).params}

    every = {"ratio", "gamma", "flair_threshold", "per_lesion", "raters", "ring", "ring_sigma"}
    assert every <= options("build-masks") and every <= options("fit")
    assert every - {"raters"} <= options("demo")
    # cv sweeps ratio, gamma, ring and raters as grid axes (--ratios, --gammas, --rings, --raters)
    assert {"flair_threshold", "per_lesion", "ring_sigma", "ratios", "gammas", "rings"} <= options(
        "cv"
    )
