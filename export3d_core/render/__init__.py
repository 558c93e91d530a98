"""Volume rendering of radiance fields: rays, tri-plane lookup, sampling, marching, renderers.

`VolumeRenderer` is the reference (EG3D's scheme); `AcceleratedRenderer` renders the same image
faster by skipping empty space (an `OccupancyGrid`) and terminating opaque rays early.
"""
from export3d_core.render.accelerated import AcceleratedRenderer
from export3d_core.render.occupancy import OccupancyGrid
from export3d_core.render.marcher import MarchResult, composite
from export3d_core.render.rays import generate_rays
from export3d_core.render.renderer import FieldFn, VolumeImages, VolumeRenderer
from export3d_core.render.sampling import importance_depths, merge_depths, stratified_depths
from export3d_core.render.triplane import sample_triplane

__all__ = [
    "AcceleratedRenderer", "FieldFn", "MarchResult", "OccupancyGrid", "VolumeImages", "VolumeRenderer",
    "composite", "generate_rays", "importance_depths", "merge_depths", "sample_triplane", "stratified_depths",
]
