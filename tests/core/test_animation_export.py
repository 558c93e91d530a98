"""Animation export: real files from a real tiny model, the curve's λ at each frame, atomic, cancel."""
import json

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from export3d_core import Export3DError
from export3d_core.animation import Animation, CameraPose, Key, two_key_animation
from export3d_core.animation_export import AnimationExportSettings, PoseRenderer, export_animation, render_pose
from export3d_core.checkpoint import save_checkpoint
from export3d_core.cli import main
from export3d_core.export import ExportCancelled
from export3d_core.project_file import load_project_file, save_animation
from export3d_core.session import PortraitSession

from tests.core.lively_model import lively, pattern

N = 10


@pytest.fixture
def session(tiny_model):
    session = PortraitSession(lively(tiny_model))
    session.set_portrait(pattern())
    return session


def recording(monkeypatch):
    """Records the λ of every frame any session renders (the export may use a reference twin)."""
    seen, render_image = [], PortraitSession.render_image

    def record(self, lam, *args, **kwargs):
        seen.append(tuple(float(v) for v in lam))
        return render_image(self, lam, *args, **kwargs)

    monkeypatch.setattr(PortraitSession, "render_image", record)
    return seen


def two_keys():
    lam_to = (6.0, -4.0) + (0.0,) * (N - 2)
    return two_key_animation((0.0,) * N, lam_to, 1.0, "smooth-step", CameraPose(yaw_deg=-10), fps=4)


def test_two_key_png_sequence_has_the_curve_at_every_frame(tmp_path, session, monkeypatch):
    animation = two_keys()
    seen = recording(monkeypatch)
    folder = export_animation(session, animation, tmp_path / "frames")
    monkeypatch.undo()
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"frame_{i:05d}.png" for i in range(5)]  # 0, .25, .5, .75, 1 s
    assert seen == [animation.sample(i / 4)[0] for i in range(5)]
    assert seen[2][0] == pytest.approx(3.0) and seen[1][0] == pytest.approx(6.0 * (3 / 16 - 2 / 64))
    frames = [np.asarray(Image.open(f)) for f in files]
    renderer = PoseRenderer(session)
    for i, frame in enumerate(frames):
        assert np.array_equal(frame, render_pose(renderer, animation, i / 4, AnimationExportSettings()))
    assert not np.array_equal(frames[0], frames[-1])  # λ changed the picture


def test_preview_lambda_changes_skip_the_occupancy_grid_and_camera_moves_reuse_it(session):
    renderer = PoseRenderer(session)
    moving = two_keys()
    for i in range(5):
        renderer.render(moving.sample(i / 4)[0], CameraPose(), quality="preview")
    assert session.counters.grid == 1  # only the first frame; the others went to the reference twin
    still_lam = (1.0,) * N
    renderer.render(still_lam, CameraPose(), quality="preview")  # λ changed: reference
    for yaw in (-10, 0, 10):
        renderer.render(still_lam, CameraPose(yaw_deg=yaw), quality="preview")
    assert session.counters.grid == 2  # one grid for the three camera moves
    for i in range(3):  # full frames keep the accelerated path
        renderer.render(moving.sample(i / 4)[0], CameraPose())
    assert session.counters.grid == 5


def test_mp4_and_gif_have_the_requested_frame_count_and_size(tmp_path, session):
    animation = two_keys()
    settings = AnimationExportSettings(fps=6, start=0.5, end=1.0, size=48)  # 0.5, 0.667, 0.833, 1.0
    mp4 = export_animation(session, animation, tmp_path / "a.mp4", settings)
    assert imageio.get_reader(mp4).count_frames() == 4
    gif = export_animation(session, animation, tmp_path / "a.gif", settings)
    frames = imageio.mimread(gif)
    assert len(frames) == 4 and frames[0].shape[:2] == (48, 48)


@pytest.mark.parametrize("name", ["c.mp4", "c.gif", "frames"])
def test_a_cancelled_export_leaves_no_file(tmp_path, session, name):
    done = []
    with pytest.raises(ExportCancelled):
        export_animation(session, two_keys(), tmp_path / name, progress=lambda n, total: done.append((n, total)),
                         should_cancel=lambda: len(done) >= 2)
    assert done == [(1, 5), (2, 5)]
    assert list(tmp_path.iterdir()) == []


def test_existing_outputs_are_kept_without_overwrite(tmp_path, session):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "precious.png").write_bytes(b"precious")
    with pytest.raises(Export3DError, match="not empty"):
        export_animation(session, two_keys(), folder)
    assert (folder / "precious.png").read_bytes() == b"precious"
    export_animation(session, two_keys(), folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir())[0] == "frame_00000.png" and len(list(folder.iterdir())) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]  # no staging folder left


def test_bad_output_and_lambda_count_are_one_line_errors(tmp_path, session):
    with pytest.raises(Export3DError, match="must end in .mp4 or .gif"):
        export_animation(session, two_keys(), tmp_path / "a.avi")
    short = two_key_animation((0.0,) * 8, (1.0,) * 8, 1.0)
    with pytest.raises(Export3DError, match="has 8 λ values; the model has 10"):
        export_animation(session, short, tmp_path / "a.gif")
    assert list(tmp_path.iterdir()) == []


def test_keys_round_trip_through_the_project_file(tmp_path):
    keys = (Key(0.0, (0.5,) * N, CameraPose(yaw_deg=12.5, radius=3.1), "hold"),
            Key(0.8, tuple(float(i) for i in range(N)), CameraPose(pitch_deg=-7), "catmull-rom"),
            Key(2.0, (-1.25,) * N, CameraPose(fov_deg=22), "ease-in-out"))
    animation = Animation(keys, fps=24, duration=2.5)
    path = save_animation(tmp_path / "p.e3d.json", animation, portrait=tmp_path / "face.png")
    project = load_project_file(path)
    assert project.animation == animation
    assert project.portrait == tmp_path / "face.png" and json.loads(path.read_text())["portrait"] == "face.png"
    assert project.lam == (0.5,) * N and project.camera == keys[0].camera


def test_saving_keys_into_a_project_keeps_its_other_keys(tmp_path):
    path = tmp_path / "p.e3d.json"
    save_animation(path, two_keys())
    data = json.loads(path.read_text())
    data["presets"] = [{"name": "smile", "lambda": [1.0] * N}]
    data["window"] = {"dock": "left"}  # a key this reader does not know
    path.write_text(json.dumps(data))
    with pytest.raises(Export3DError, match="exists"):
        save_animation(path, two_keys())
    changed = Animation((Key(0.0, (2.0,) * N),), fps=12)
    save_animation(path, changed, overwrite=True)
    saved = json.loads(path.read_text())
    assert saved["presets"] == data["presets"] and saved["window"] == {"dock": "left"}
    assert load_project_file(path).animation == changed


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other"), "not an Export3D Studio project"),
    (lambda d: d["animation"]["keys"][0].update(easing="wobble"), "p.e3d.json: unknown easing 'wobble'"),
    (lambda d: d["animation"]["keys"][0]["lambda"].pop(), "p.e3d.json: .*model has 10|key 2 has 10 λ values"),
    (lambda d: d.update(camera={"yaw_deg": "left"}), "camera yaw_deg must be a number"),
])
def test_bad_project_files_are_one_line_errors(tmp_path, edit, message):
    path = save_animation(tmp_path / "p.e3d.json", two_keys())
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(Export3DError, match=message) as info:
        load_project_file(path)
    assert "\n" not in str(info.value)


@pytest.fixture
def project(tmp_path, tiny_model):
    checkpoint = save_checkpoint(lively(tiny_model), tmp_path / "tiny.safetensors")
    Image.fromarray(pattern(96)).save(tmp_path / "face.png")
    return save_animation(tmp_path / "p.e3d.json", two_keys(), portrait=tmp_path / "face.png", checkpoint=checkpoint)


def test_animate_command_writes_the_gif_and_refuses_to_overwrite(tmp_path, project, capsys):
    out = tmp_path / "out.gif"
    assert main(["animate", str(project), "-o", str(out), "--aligned", "--fps", "2"]) == 0
    assert len(imageio.mimread(out)) == 3
    before = out.read_bytes()
    assert main(["animate", str(project), "-o", str(out), "--aligned"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_animate_command_without_keys_says_so(tmp_path, project, capsys):
    data = json.loads(project.read_text())
    del data["animation"]
    project.write_text(json.dumps(data))
    assert main(["animate", str(project), "-o", str(tmp_path / "x.gif"), "--aligned"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("export3d animate: error: p.e3d.json has no animation; add keys in the editor's timeline "
                   "or bake them with `export3d drive --keys-out`")


def test_the_shipped_example_project_loads_with_its_keys():
    from export3d_core.checkpoint import REPO_ROOT

    project = load_project_file(REPO_ROOT / "resources" / "examples" / "open_wink_turn.e3d.json")
    assert project.portrait.is_file() and project.checkpoint is None
    animation = project.animation
    assert len(animation.keys) == 4 and animation.duration == 3.0 and animation.fps == 12
    assert [k.easing for k in animation.keys[:3]] == ["ease-in-out", "catmull-rom", "catmull-rom"]
    assert len(animation.frame_times()) == 37


def test_animate_bench_prints_playback_and_export_numbers(tmp_path, project, capsys):
    assert main(["animate", str(project), "--bench", "--bench-frames", "4", "--aligned"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("preview playback: ") and "frames/s over 5 frames" in lines[-2]
    assert lines[-1].startswith("full-quality export: 4 frames to MP4 in ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "p.e3d.json", "tiny.safetensors"]


@pytest.fixture
def photo_project(tmp_path):
    """A project of the demo model (a random tiny model is nearly transparent: little would be pasted) on
    a real photo (the public-domain astronaut, framed by dlib): keys at the photo's own pose (yaw 0) and
    15° to its side, v1 moving."""
    from export3d_core.checkpoint import REPO_ROOT

    keys = (Key(0.0, (0.0,) * N, CameraPose(), "linear"), Key(1.0, (6.0,) + (0.0,) * (N - 1), CameraPose(yaw_deg=15)))
    photo = REPO_ROOT / "resources" / "portraits" / "astronaut.png"
    return save_animation(tmp_path / "p.e3d.json", Animation(keys, fps=2), portrait=photo)


@pytest.mark.usefixtures("offline_hub")  # dlib frames the photo; no hub weights, no network
def test_animate_paste_back_writes_photo_sized_frames_that_keep_the_photo_outside_the_mask(
        tmp_path, photo_project, capsys):
    from export3d_core.animation_commands import open_portrait_session
    from export3d_core.paste_back import paste_weight, photo_compositor

    out = tmp_path / "pasted"
    assert main(["animate", str(photo_project), "--paste-back", "--fps", "4", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "5 frames at 4 fps, pasted into the photo" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "only right within 10° yaw" in warnings[0]  # warned once, for all frames
    assert "15° yaw" in warnings[0] and "2 of 5 frames are beyond it" in warnings[0]  # 11.25° and 15°

    project = load_project_file(photo_project)
    session = open_portrait_session(project.checkpoint, project.portrait)
    compositor = photo_compositor(project.portrait, session.config.input_size)
    photo = compositor.original
    frames = [np.asarray(Image.open(f)) for f in sorted(out.iterdir())]
    assert len(frames) == 5 and all(f.shape == photo.shape for f in frames)  # the photo's own size
    for i, frame in enumerate(frames):
        lam, key_camera = project.animation.sample(i / 4)
        camera = compositor.turned(np.radians(key_camera.yaw_deg), np.radians(key_camera.pitch_deg))
        assert np.array_equal(frame, compositor.frame(session, lam, camera))
        alpha = session.render(lam, camera).alpha[0, 0].float().numpy()
        weight = paste_weight(photo.shape[:2], compositor.transform, compositor.crop_size,
                              session.config.output_size, alpha, camera.params().numpy())
        outside = weight == 0
        assert 0.5 < outside.mean() < 0.99  # a face-sized mask
        assert np.array_equal(frame[outside], photo[outside])  # the photo, pixel for pixel
        assert np.abs(frame.astype(int) - photo)[weight > 0.9].mean() > 20  # the render replaced the face
    # A key's yaw 0 is the photo's own pose (as `render --paste-back` without --yaw), not the frontal view.
    first = compositor.frame(session, project.animation.sample(0.0)[0], compositor.photo_camera)
    assert np.array_equal(frames[0], first)
    photo_pose = compositor.photo_camera
    assert max(abs(photo_pose.yaw), abs(photo_pose.pitch)) > np.radians(1)  # so that the line above could fail


def test_pasted_frames_turn_the_head_from_the_photos_pose_with_the_photos_distance_and_fov():
    from export3d_core.animation_export import animation_paste_back_problem, paste_back_cameras
    from export3d_core.camera import OrbitCamera

    photo = OrbitCamera(yaw=np.radians(12), pitch=np.radians(-5), radius=3.1, fov_deg=14.0)
    keys = (Key(0.0, (0.0,) * N, CameraPose(yaw_deg=0, radius=2.0, fov_deg=30), "linear"),
            Key(1.0, (0.0,) * N, CameraPose(yaw_deg=-20, pitch_deg=4, radius=2.0, fov_deg=30)))
    animation = Animation(keys, fps=4)
    times = animation.frame_times()
    cameras = paste_back_cameras(animation, times, photo)
    assert [round(np.degrees(c.yaw), 6) for c in cameras] == [12, 7, 2, -3, -8]
    assert [round(np.degrees(c.pitch), 6) for c in cameras] == [-5, -4, -3, -2, -1]
    assert {(c.radius, c.fov_deg) for c in cameras} == {(3.1, 14.0)}  # the photo's, not the keys'
    problem = animation_paste_back_problem(animation, times, photo)
    assert "only right within 10° yaw" in problem and "(this view: 20° yaw, 4° pitch away); 2 of 5 frames" in problem
    assert animation_paste_back_problem(animation, times[:3], photo) == ""  # 0°, 5° and 10° away: within


@pytest.mark.usefixtures("offline_hub")
def test_animate_renders_with_the_projects_fit_and_refuses_one_for_another_photo(tmp_path, capsys):
    from export3d_core.checkpoint import REPO_ROOT

    photo = REPO_ROOT / "resources" / "portraits" / "astronaut.png"
    fit = tmp_path / "me.fit.safetensors"
    assert main(["fit", str(photo), "-o", str(fit), "--random-init", "tiny", "--steps", "2"]) == 0
    project = save_animation(tmp_path / "p.e3d.json", two_key_animation((0.0,) * N, (3.0,) * N, 0.5, fps=2),
                             portrait=photo)
    unfitted, fitted = tmp_path / "unfitted", tmp_path / "fitted"
    assert main(["animate", str(project), "--random-init", "tiny", "-o", str(unfitted)]) == 0
    data = json.loads(project.read_text())
    project.write_text(json.dumps({**data, "fit": fit.name}))  # as the editor saves it: beside the project
    assert main(["animate", str(project), "--random-init", "tiny", "-o", str(fitted)]) == 0
    pairs = list(zip(sorted(unfitted.iterdir()), sorted(fitted.iterdir())))
    assert len(pairs) == 2 and all(not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
                                   for a, b in pairs)
    other = tmp_path / "mirrored.png"
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    capsys.readouterr()
    assert main(["animate", str(project), "--random-init", "tiny", "--fit", str(fit), "--portrait", str(other),
                 "-o", str(tmp_path / "other.gif")]) == 2
    assert "was made for another photo" in capsys.readouterr().err
    assert not (tmp_path / "other.gif").exists()
