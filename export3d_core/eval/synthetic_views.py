"""Moved to `export3d_core.data.synthetic_views`; this name is kept for code written against the old location."""
from export3d_core.data.synthetic_views import *  # noqa: F401,F403
from export3d_core.data.synthetic_views import __all__  # noqa: F401
