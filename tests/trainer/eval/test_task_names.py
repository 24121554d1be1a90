"""Which benchmark a name in `eval.tasks` means, and what is wrong with a task list, read from the spec alone."""

from __future__ import annotations

from llm_platform.trainer.eval.task_names import OFFLINE_TASKS, TaskRef, resolve, task_list_problems


def test_our_names_are_offline_and_the_rest_go_to_lm_eval():
    assert resolve("mmlu") == TaskRef("mmlu", offline=True)
    assert resolve("mmlu_college_physics") == TaskRef("mmlu_college_physics", offline=True)
    assert resolve("hellaswag") == TaskRef("hellaswag", offline=True)
    assert resolve("mmlu_pro") == TaskRef("mmlu_pro", offline=True)
    assert resolve("mmlu_prox_de") == TaskRef("mmlu_prox_de", offline=False)  # not ours: lm-eval's own task
    assert resolve("flores200_eng-deu") == TaskRef("flores200_eng-deu", offline=True)
    assert resolve("flores_eng_Latn-deu_Latn") == TaskRef("flores_eng_Latn-deu_Latn", offline=False)
    assert resolve("arc_easy") == TaskRef("arc_easy", offline=False)
    assert resolve("lm-eval:hellaswag") == TaskRef("hellaswag", offline=False)


def test_groups_cover_their_published_members():
    assert len(resolve("mmlu").covers()) == 57 and {"mmlu_professional_law", "mmlu_pro_law"} <= set(OFFLINE_TASKS)
    assert len(resolve("bbh_cot_fewshot").covers()) == 27 and len(resolve("mmlu_pro").covers()) == 14


def test_a_group_and_one_of_its_members_cannot_both_run():
    (problem,) = task_list_problems(["bbh_cot_fewshot", "bbh_cot_fewshot_snarks"], "/data")
    assert problem.startswith("eval.tasks[1]: 'bbh_cot_fewshot_snarks' evaluates bbh_cot_fewshot_snarks, which")


def test_a_missing_data_dir_names_the_files_each_task_reads():
    (problem,) = task_list_problems(["gsm8k_cot", "humaneval"], None)
    assert "gsm8k/{train,test}.jsonl, humaneval/HumanEval.jsonl.gz" in problem
    (problem,) = task_list_problems(["mmlu_pro_law"], None)
    assert "mmlu_pro/{test,validation}.jsonl" in problem and "mmlu/{dev,test}" not in problem


def test_a_task_twice_is_named_with_both_positions():
    assert task_list_problems(["arc_easy", "lm-eval:gsm8k", "arc_easy"], None) == [
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
