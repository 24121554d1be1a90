"""lm-eval's own command line with our model registered as `llmp`:

    python -m llm_platform.trainer.eval.lm_eval_cli --model llmp --model_args path=DIR --tasks arc_easy

lm-eval finds models in its registry, which only holds the classes of modules imported in that process; importing
`lm_eval_model` registers `PlatformLM` there, then lm-eval's `cli_evaluate` runs as the `lm_eval` command does.
"""

from __future__ import annotations

from . import lm_eval_model  # noqa: F401  (registers --model llmp)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
