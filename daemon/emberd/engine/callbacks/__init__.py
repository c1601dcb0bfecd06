"""Lightning callbacks of a fit, one per file: the time budget, the learning-rate schedule
over that budget, validation with best-weight selection and checkpoints, and progress."""

from .linear_probe import LinearProbe
from .lr_schedule import BudgetSchedule
from .progress import Progress
from .time_budget import TimeBudget
from .validator import Validator

__all__ = ["BudgetSchedule", "LinearProbe", "Progress", "TimeBudget", "Validator"]
