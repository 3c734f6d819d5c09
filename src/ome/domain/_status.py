"""Outcome codes for "does this fit": data, not exceptions.

Callers act on the code:
- SUCCESS: go ahead.
- UNSCHEDULABLE: does not fit now; may fit after something is released or evicted.
- UNSCHEDULABLE_AND_UNRESOLVABLE: can never fit here (wrong GPU model, node too small);
  preemption on this node cannot help.
- ERROR: an internal problem; report it, do not retry blindly.
- SKIP: the plugin has nothing to say about this pod.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Code(enum.IntEnum):
    SUCCESS = 0
    UNSCHEDULABLE = 1
    UNSCHEDULABLE_AND_UNRESOLVABLE = 2
    ERROR = 3
    SKIP = 4


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @staticmethod
    def unschedulable(reason: str, plugin: str = "") -> Status:
        return Status(Code.UNSCHEDULABLE, (reason,), plugin)

    @staticmethod
    def unresolvable(reason: str, plugin: str = "") -> Status:
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (reason,), plugin)


SUCCESS = Status()
