"""Moved to `export3d_core.metrics`; this name is kept for code written against the old location."""
from export3d_core.metrics import *  # noqa: F401,F403
from export3d_core.metrics import __all__  # noqa: F401
