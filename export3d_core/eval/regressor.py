"""Moved to `export3d_core.faces.regressor` (network, file format) and
`export3d_core.faces.regressor_training`; this name is kept for code written against the old location."""
from export3d_core.faces.regressor import *  # noqa: F401,F403
from export3d_core.faces.regressor_training import *  # noqa: F401,F403
