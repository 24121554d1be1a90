"""Which benchmark a name in `eval.tasks` means, and what is wrong with a task list, read from the spec alone."""

from __future__ import annotations

from llm_platform.trainer.eval.task_names import OFFLINE_TASKS, TaskRef, resolve, task_list_problems


def test_our_names_are_offline_and_the_rest_go_to_lm_eval():
    assert resolve("mmlu") == TaskRef("mmlu", offline=True)
    assert resolve("mmlu_college_physics") == TaskRef("mmlu_college_physics", offline=True)
    assert resolve("hellaswag") == TaskRef("hellaswag", offline=True)
    assert resolve("mmlu_pro") == TaskRef("mmlu_pro", offline=False)  # not a subject: lm-eval's own task
    assert resolve("arc_easy") == TaskRef("arc_easy", offline=False)
    assert resolve("lm-eval:hellaswag") == TaskRef("hellaswag", offline=False)


def test_mmlu_has_57_subjects():
    assert len([name for name in OFFLINE_TASKS if name.startswith("mmlu_")]) == 57


def test_a_task_twice_is_named_with_both_positions():
    assert task_list_problems(["arc_easy", "gsm8k", "arc_easy"], None) == [
        "eval.tasks[2]: 'arc_easy' evaluates arc_easy, which 'arc_easy' (eval.tasks[0]) already evaluates; list it once"
    ]


def test_our_task_and_lm_evals_of_the_same_name_cannot_both_run():
    """lm-eval reports results by task name, so the two would overwrite each other."""
    (problem,) = task_list_problems(["hellaswag", "lm-eval:hellaswag"], "/data")
    assert problem.startswith("eval.tasks[1]: 'lm-eval:hellaswag' evaluates hellaswag")


def test_an_empty_name_is_refused():
    assert task_list_problems(["lm-eval:"], None) == [
        "eval.tasks[0]: empty task name; write an lm-eval task name such as hellaswag"
    ]


def test_stock_tasks_alone_need_no_data_dir():
    assert task_list_problems(["arc_easy", "lm-eval:mmlu"], None) == []
