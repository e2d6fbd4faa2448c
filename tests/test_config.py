"""One settings model: EvalConfig fields carry their help, `sustain eval --help` is made from it, and
eval configs and recipes share one unknown-key message (did-you-mean)."""
from __future__ import annotations

import dataclasses

import pytest

from sustain.eval.cli import build_parser
from sustain.eval.config import EvalConfig, from_dict
from sustain.eval.errors import UserError


def test_every_eval_setting_has_help_and_eval_help_shows_it():
    fields = dataclasses.fields(EvalConfig)
    assert all(f.metadata.get("help") for f in fields), [f.name for f in fields if not f.metadata.get("help")]
    sub = build_parser()._subparsers._group_actions[0].choices["eval"]
    shown = {a.dest: a.help for a in sub._actions}
    for f in fields:
        assert shown[f.name].startswith(f.metadata["help"])


def test_unknown_key_names_the_closest_valid_ones():
    with pytest.raises(UserError) as err:
        from_dict(EvalConfig, {"k_mx": 2}, "x.yaml")
    assert str(err.value).startswith("unknown key 'k_mx' in x.yaml (fix: did you mean k_max?")
    assert "valid keys: model, tasks" in str(err.value)


def test_recipe_and_eval_config_share_the_message(tmp_path):
    from sustain.train.config import parse_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\nmax_step: 3\n")
    with pytest.raises(UserError, match=r"^unknown key 'max_step' in .*r.yaml \(fix: did you mean max_steps"):
        parse_recipe("sft", ["--config", str(recipe)])
