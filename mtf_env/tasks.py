"""The 12 tasks of the multi-task model and of the feedback vector, in one fixed order.

Every 12-vector in the project (scorer predictions ``o``, fusion weights ``alpha``,
smoothing constants ``beta``, per-video feedback ``v``, reward weights ``w``) uses this
order.
"""
from __future__ import annotations

TASK_NAMES: tuple[str, ...] = (
    "play_time",      # seconds played (feedback); predicted as play_time_s / PLAY_TIME_SCALE_S
    "finish",         # watched to the end (play integrity)
    "long_view",      # played >= 18 s or to the end
    "skip",           # swiped away within 3 s
    "like",
    "share",
    "comment",
    "follow",
    "collect",
    "profile_visit",
    "hate",           # "not interested"
    "exit",           # the user closed the app after this video
)
N_TASKS: int = len(TASK_NAMES)
TASK_INDEX: dict[str, int] = {name: i for i, name in enumerate(TASK_NAMES)}
#: Tasks whose feedback is bad for the platform; their fusion weight may be negative.
NEGATIVE_TASKS: tuple[str, ...] = ("skip", "hate", "exit")
#: Tasks that count as a positive interaction for UPIRate.
POSITIVE_INTERACTIONS: tuple[str, ...] = ("like", "share", "comment", "follow", "collect", "profile_visit")
#: Play time target of the scorer is ``min(play_time_s / PLAY_TIME_SCALE_S, 1)``.
PLAY_TIME_SCALE_S: float = 120.0
