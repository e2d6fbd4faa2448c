import pytest
from conftest import need_data

from sustain.eval.errors import UserError
from sustain.eval.tasks import TASKS, get_task
from sustain.eval.tasks.gsm8k import GSM8KTask
from sustain.eval.tasks.hotpotqa import HotpotQATask


@pytest.mark.parametrize("name, cls", [("gsm8k", GSM8KTask), ("hotpotqa", HotpotQATask)])
def test_get_task_builds_the_registered_class(name, cls):
    task = get_task(name)
    assert type(task) is cls and task.name == name


def test_options_reach_the_constructor():
    path = str(need_data("hotpotqa/dev_distractor_first103.jsonl"))
    task = get_task("hotpotqa", data=path, f1_threshold=0.5)
    assert task.f1_threshold == 0.5 and len(task.load(limit=2)) == 2


def test_unknown_task_is_a_one_line_user_error_listing_the_names():
    with pytest.raises(UserError) as info:
        get_task("gsm9k")
    message = str(info.value)
    assert "unknown task 'gsm9k'" in message and "\n" not in message
    assert all(name in message for name in TASKS)
