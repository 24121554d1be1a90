"""How `llmp` reports failure.

A failure the user can fix (a bad spec, a missing credential, a glob that matches nothing, a refused setting) is one
line naming the field or file and what to do, with exit code 2. An unexpected one is one line too, exit code 1, naming
how to see more. The traceback is shown only with `llmp --debug` (or LLMP_DEBUG=1, which stage subprocesses inherit),
so a newcomer reads the cause instead of thirty lines of frames. Problems (`api.Problem`, from validation and
preflight alike) are rendered by `api.errors.render_problems`, the one place that formats them for a command line.
"""

from __future__ import annotations

import os
import sys

import typer
import typer.core

from llm_platform.observability.console import make_console

__all__ = ["DEBUG_ENV", "ReportingGroup", "UserError", "debugging", "report", "user_message"]

DEBUG_ENV = "LLMP_DEBUG"


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def user_message(error: BaseException) -> str | None:
    """What to print for an error the user can fix, or None for one that is a bug (or unknown here)."""
    from llm_platform.api import SpecError
    from llm_platform.api.errors import render_problems
    from llm_platform.storage import StoreError
    from llm_platform.trainer.stages.preflight import PreflightError

    if isinstance(error, SpecError):
        return render_problems(error.problems, error.source)
    if isinstance(error, PreflightError):
        return render_problems(error.problems, error.source, head="cannot run, nothing was started")
    if isinstance(error, StoreError | UserError):
        return str(error)
    synthetic = sys.modules.get("llm_platform.trainer.data.synthetic")  # not loaded: the error cannot be its own
    if synthetic is not None and isinstance(error, synthetic.EndpointError):
        return f"data.synthetic: {error}"
    if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return f"{error.filename}: {error.strerror}" if error.filename else str(error)
    botocore = _botocore_message(error)
    if botocore is not None:
        return botocore
    if isinstance(error, ValueError | TimeoutError | ConnectionError):  # raised with a message meant for the user
        return str(error)
    return None


class UserError(Exception):
    """Something the user can fix, raised by a command with the whole message (field or file, and what to do)."""


def _botocore_message(error: BaseException) -> str | None:
    module = type(error).__module__
    if not module.startswith("botocore"):
        return None
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return (
            "S3: no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or keep "
            "artifacts local with --storage DIR"
        )
    return f"S3: {error}"


def report(error: BaseException) -> int:
    """Print `error` as one message on stderr and return the exit code: 2 for the user's to fix, 1 for the rest."""
    err = make_console(stderr=True)
    message = user_message(error)
    if message is not None:
        err.print(message, markup=False, highlight=False)
        return 2
    detail = str(error).strip().splitlines()
    err.print(
        f"llmp: unexpected {type(error).__name__}{': ' + detail[0] if detail else ''} (rerun with --debug or "
        f"{DEBUG_ENV}=1 for the traceback)",
        markup=False,
        highlight=False,
    )
    return 1


class ReportingGroup(typer.core.TyperGroup):
    """The `llmp` command group: a command's failure becomes `report`'s one message and exit code, unless debugging;
    a bad option or argument is one line too (typer's own box spans five)."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise
        except typer.TyperException as error:
            if not _is_usage_error(error) or debugging():
                raise
            where = error.ctx.command_path if getattr(error, "ctx", None) else ctx.command_path
            message = error.format_message().replace("Value error, ", "")  # typer's wording for a bad choice
            make_console(stderr=True).print(f"{where}: {message} (see {where} --help)", markup=False, highlight=False)
            raise typer.Exit(2) from None
        except Exception as error:  # noqa: BLE001  # every failure is reported; --debug shows the traceback
            if debugging():
                raise
            raise typer.Exit(report(error)) from None


def _is_usage_error(error: Exception) -> bool:
    """A bad option, argument or command name (click's UsageError), but not the help shown for a bare group. Matched
    by class name: typer vendors click (in `typer._click`, a private module), so `click.UsageError` is not it."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return "UsageError" in names and "NoArgsIsHelpError" not in names
