"""Which process this is, the same way the engine's Accelerator sees it.

accelerate's ``PartialState()`` ignores ``ACCELERATE_USE_CPU`` (only the Accelerator reads
it), so a state created before the engine's would take several CPU processes for
independent single ones; here it is read the same way.
"""
from __future__ import annotations


def state():
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def is_main_process() -> bool:
    """True on the process that writes shared files (the only one, outside distributed runs)."""
    return state().is_main_process


def process_index() -> int:
    return state().process_index


def wait_for_everyone() -> None:
    state().wait_for_everyone()
