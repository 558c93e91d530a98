"""The editor still opens a project whose keys were written by the core (`export3d drive --keys-out`)."""
from app.project import load_project
from export3d_core.animation import CameraPose, two_key_animation
from export3d_core.project_file import save_animation


def test_editor_opens_a_project_with_an_animation_key(tmp_path):
    animation = two_key_animation([0.0] * 10, [3.0] * 10, 2.0, camera=CameraPose(yaw_deg=10.0))
    path = save_animation(tmp_path / "driven.e3d.json", animation, portrait=tmp_path / "face.png")
    project = load_project(path)
    assert project.lam == (0.0,) * 10 and project.camera.yaw_deg == 10.0
    assert project.portrait == tmp_path / "face.png"
