"""`export3d`: every sub-command answers a refused output, a bad argument or an OSError with one
line on stderr and a non-zero exit code, never a traceback (cli.run_handler is the one place)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut
from test_dataset import write_toy_corpus

from export3d_core.animation import two_key_animation
from export3d_core.cli import EXIT_SYSTEM_ERROR, EXIT_USER_ERROR, build_parser, main
from export3d_core.export import write_animation
from export3d_core.project_file import save_animation

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder that refuses new files for real. Tests run as root here, and root ignores
    permission bits, so as root the folder is made immutable (`chattr +i`, which binds root too);
    where that is not possible, /sys (sysfs refuses new files to everyone) stands in."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0:
        try:
            yield folder
        finally:
            subprocess.run([chattr, "-i", str(folder)], check=True)
        return
    yield Path("/sys")


def _refused(folder: Path) -> None:
    with pytest.raises(OSError):
        (folder / "probe.txt").write_bytes(b"")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    photo = root / "photo.png"
    Image.fromarray(astronaut()).save(photo)
    frames = root / "frames"
    frames.mkdir()
    for index in range(2):
        Image.fromarray(astronaut()).save(frames / f"{index:04d}.png")
    project = save_animation(root / "anim.e3d.json", two_key_animation([0.0] * 10, [1.0] * 10, 0.1, fps=10),
                             portrait=photo)
    presets = root / "presets.json"
    presets.write_text(json.dumps({"format": "export3d-studio-presets",
                                   "presets": [{"name": "a", "lambda": [0.0] * 10}]}))
    clip = write_animation(root / "clip.mp4", [astronaut()] * 3, 10)
    return {"photo": photo, "frames": frames, "corpus": write_toy_corpus(root / "corpus", clips=2, frames=3, res=64),
            "project": project, "presets": presets, "clip": clip}


# Each sub-command with its output in OUT (a folder that refuses writes), as fast as it runs.
COMMANDS: dict[str, list[str]] = {
    "render": ["render", "--random-init", "tiny", "-o", "{OUT}/still.png"],
    "turntable": ["turntable", "--random-init", "tiny", "--frames", "2", "-o", "{OUT}/turn.gif"],
    "sweep": ["sweep", "--random-init", "tiny", "--basis", "1", "--from", "0", "--to", "1", "--steps", "2",
              "-o", "{OUT}/sweep.gif"],
    "crop": ["crop", "{photo}", "-o", "{OUT}/crop.png"],
    "synth": ["synth", "-o", "{OUT}/corpus", "--identities", "1", "--frames", "1", "--res", "32",
              "--workers", "1", "--no-progress"],
    "prepare": ["prepare", "{frames}", "-o", "{OUT}/prepared"],
    "train": ["train", "--data", "{corpus}", "--out", "{OUT}/run", "--steps", "1", "--no-progress"],
    "pretrain-clebs": ["pretrain-clebs", "--data", "{corpus}", "--out", "{OUT}/clebs", "--steps", "1",
                       "--no-progress"],
    "eval": ["eval", "--identities", "1", "--frames", "2", "--json", "{OUT}/eval.json", "--no-progress"],
    "bench": ["bench", "--forward", "--presets", "tiny", "--repeats", "1", "--warmup", "0",
              "--json", "{OUT}/bench.json"],
    "eval-real": ["eval-real", "{photo}", "--json", "{OUT}/real.json", "--no-progress"],
    "train-face-features": ["train-face-features", "{OUT}/face_features.safetensors"],
    "mesh": ["mesh", "--random-init", "tiny", "--resolution", "16", "-o", "{OUT}/head.ply"],
    "demo-portraits": ["demo-portraits", "--count", "1", "--res", "32", "-o", "{OUT}/portraits"],
    "train-expression-reader": ["train-expression-reader", "--data", "{corpus}", "-o", "{OUT}/reader.safetensors",
                                "--steps", "1", "--no-progress"],
    "fit": ["fit", "{photo}", "--random-init", "tiny", "--steps", "1", "-o", "{OUT}/photo.fit.safetensors"],
    "animate": ["animate", "{project}", "--random-init", "tiny", "--aligned", "-o", "{OUT}/anim.gif"],
    "batch": ["batch", "--preset", "{presets}", "--portraits", "{frames}", "--random-init", "tiny", "--aligned",
              "-o", "{OUT}/batch"],
    "drive": ["drive", "--video", "{clip}", "-o", "{OUT}/drive.gif"],
    "live": ["live", "--video", "{clip}", "--seconds", "1", "--keys-out", "{OUT}/take.e3d.json"],
}
# Sub-commands that write only into an existing input (no output path of their own to refuse).
IN_PLACE = {"expression-gain"}  # rewrites the last checkpoint of the run it is given


def _sub_commands() -> set[str]:
    parser = build_parser()
    return set(next(action.choices for action in parser._actions if getattr(action, "choices", None)))


def _skip_unless_built(command: str) -> None:
    if command not in _sub_commands():
        pytest.skip(f"this build has no `{command}` sub-command")


def _argv(command: str, out: Path, inputs: dict[str, Path]) -> list[str]:
    names = {"OUT": str(out), **{key: str(value) for key, value in inputs.items()}}
    return [part.format(**names) for part in COMMANDS[command]]


def _one_error_line(stderr: str, command: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"export3d {command}: error: "), lines[0]
    return lines[0]


def test_every_sub_command_has_a_case() -> None:
    """A new sub-command must be added to COMMANDS (and so to the read-only test below)."""
    assert _sub_commands() <= set(COMMANDS) | IN_PLACE, sorted(_sub_commands() - set(COMMANDS) - IN_PLACE)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_read_only_output_folder_is_one_line(command: str, read_only_dir: Path, inputs: dict[str, Path],
                                             capsys: pytest.CaptureFixture) -> None:
    _skip_unless_built(command)
    _refused(read_only_dir)
    code = main(_argv(command, read_only_dir, inputs))
    assert code == EXIT_SYSTEM_ERROR
    line = _one_error_line(capsys.readouterr().err, command)
    assert str(read_only_dir) in line
    assert "not permitted" in line or "denied" in line or "Read-only" in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_under_a_regular_file_is_one_line(command: str, tmp_path: Path, inputs: dict[str, Path],
                                                 capsys: pytest.CaptureFixture) -> None:
    """`-o file/out.png`: the path goes through a file (NotADirectoryError, also for root)."""
    _skip_unless_built(command)
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"not a folder")
    code = main(_argv(command, blocker, inputs))
    assert code in (EXIT_USER_ERROR, EXIT_SYSTEM_ERROR)
    line = _one_error_line(capsys.readouterr().err, command)
    assert str(blocker) in line
    assert blocker.read_bytes() == b"not a folder"


@pytest.mark.parametrize("argv, message", [
    (["turntable", "--amplitude", "nan"], "--amplitude: 'nan' is not a finite number"),
    (["turntable", "--frames", "100000"], "--frames: 100000 is above the maximum"),
    (["sweep", "--basis", "1", "--from", "nan", "--to", "1"], "--from: 'nan' is not a finite number"),
    (["sweep", "--basis", "1", "--from", "0", "--to", "inf"], "--to: 'inf' is not a finite number"),
    (["sweep", "--basis", "1", "--from", "0", "--to", "1", "--steps", "-3"], "--steps: -3 is below the minimum 2"),
    (["sweep", "--basis", "1", "--from", "0", "--to", "1", "--fps", "0"], "--fps: 0 is below the minimum 1"),
    (["sweep", "--basis", "1", "--from", "0", "--to", "1", "--fps", "-5"], "--fps: -5 is below the minimum 1"),
    (["render", "--yaw", "inf"], "--yaw: 'inf' is not a finite number"),
    (["render", "--radius", "-1"], "--radius: -1 must be greater than 0"),
])
def test_bad_numbers_are_refused_while_parsing(argv: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "-o", str(tmp_path / "out.gif")])
    assert exit_info.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["render", "--random-init", "tiny", "--device", "meta"], "cannot compute on device 'meta'"),
    (["render", "--random-init", "tiny", "--device", "warp9"], "unknown device 'warp9'"),
    (["render", "--random-init", "tiny", "--lam", "v1=1e15"], "beyond ±1e+06"),
    (["sweep", "--random-init", "tiny", "--basis", "1", "--from", "0", "--to", "1e20"], "--to 1e+20 is beyond"),
])
def test_bad_values_are_one_line(argv: list[str], message: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    suffix = ".png" if argv[0] == "render" else ".gif"
    assert main([*argv, "-o", str(tmp_path / f"out{suffix}")]) == EXIT_USER_ERROR
    assert message in _one_error_line(capsys.readouterr().err, argv[0])
    assert list(tmp_path.iterdir()) == []


def test_overwrite_onto_a_folder_named_like_a_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "x.png"
    (folder / "keep").mkdir(parents=True)
    assert main(["render", "--random-init", "tiny", "--overwrite", "-o", str(folder)]) == EXIT_USER_ERROR
    assert "is a folder" in _one_error_line(capsys.readouterr().err, "render")
    assert (folder / "keep").is_dir()


def test_output_onto_a_looping_symlink_is_refused_and_the_link_kept(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    first.symlink_to(second)
    second.symlink_to(first)
    assert main(["render", "--random-init", "tiny", "--overwrite", "-o", str(first)]) == EXIT_USER_ERROR
    assert "symbolic link that leads nowhere" in _one_error_line(capsys.readouterr().err, "render")
    assert first.is_symlink() and os.readlink(first) == str(second)


def test_output_through_a_good_symlink_replaces_its_target(tmp_path: Path) -> None:
    target, link = tmp_path / "real.png", tmp_path / "link.png"
    target.write_bytes(b"old")
    link.symlink_to(target)
    assert main(["render", "--random-init", "tiny", "--overwrite", "-o", str(link)]) == 0
    assert link.is_symlink() and Image.open(target).size == (64, 64)


def test_portrait_that_is_a_symlink_loop(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first, second = tmp_path / "p.png", tmp_path / "q.png"
    first.symlink_to(second)
    second.symlink_to(first)
    code = main(["render", "--random-init", "tiny", "--portrait", str(first), "-o", str(tmp_path / "out.png")])
    assert code == EXIT_USER_ERROR
    assert "symbolic link that leads nowhere" in _one_error_line(capsys.readouterr().err, "render")


def test_a_real_process_prints_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    """The installed entry point's behaviour end to end: exit code and stderr of a real process."""
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "export3d_core.cli", "render", "--random-init", "tiny",
                             "-o", str(blocker / "out.png")], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == EXIT_USER_ERROR
    assert "a file, not a folder" in _one_error_line(result.stderr, "render")


def test_os_errors_name_the_path_and_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Any OSError a handler meets (here a real one: reading a folder as a file) maps to exit 1."""
    import argparse

    from export3d_core.cli import run_handler

    def handler(args: argparse.Namespace) -> int:
        Path(tmp_path).read_bytes()
        return 0

    assert run_handler(argparse.Namespace(command="render", handler=handler)) == EXIT_SYSTEM_ERROR
    line = _one_error_line(capsys.readouterr().err, "render")
    assert line == f"export3d render: error: {tmp_path}: Is a directory"


def test_numbers_are_written_for_a_good_render(tmp_path: Path) -> None:
    """The guards leave good input alone: a normal render still writes its image."""
    out = tmp_path / "ok.png"
    assert main(["render", "--random-init", "tiny", "--lam", "v1=3,v2=-1e6", "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (64, 64, 3)


@pytest.mark.parametrize("command", ["render", "turntable", "sweep", "train", "pretrain-clebs", "eval", "bench",
                                     "eval-real", "fit"])
def test_device_meta_is_refused_by_every_command_that_computes(command: str, tmp_path: Path,
                                                               inputs: dict[str, Path],
                                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert main([*_argv(command, out, inputs), "--device", "meta"]) == EXIT_USER_ERROR
    assert "cannot compute on device 'meta'" in _one_error_line(capsys.readouterr().err, command)
    assert list(out.iterdir()) == []


def test_prepare_input_that_is_a_symlink_loop(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    first.symlink_to(second)
    second.symlink_to(first)
    assert main(["prepare", str(first), "-o", str(tmp_path / "corpus")]) == EXIT_USER_ERROR
    assert "leads nowhere" in _one_error_line(capsys.readouterr().err, "prepare")


@pytest.mark.parametrize("extra, message", [
    (["--mode", "depth"], "--paste-back composites the final image; drop --mode or use --mode final"),
    (["--size", "64"], "--paste-back writes frames at the photo's own size; drop --size"),
    (["--quality", "preview"], "--paste-back renders full-quality frames; drop --quality preview"),
    (["--bench"], "--bench measures the timeline's own renders; drop --paste-back"),
    (["--hand-crop"], "crop was placed by hand, so the photo's alignment is not known"),
])
def test_animate_paste_back_refuses_what_it_cannot_honour(extra: list[str], message: str, tmp_path: Path,
                                                          inputs: dict[str, Path],
                                                          capsys: pytest.CaptureFixture) -> None:
    project = inputs["project"]
    if extra == ["--hand-crop"]:
        data = json.loads(project.read_text())
        data.update(crop={"center": [256.0, 200.0], "side": 300.0}, portrait=str(inputs["photo"]))
        project = tmp_path / "cropped.e3d.json"
        project.write_text(json.dumps(data))
        extra = []
    out = tmp_path / "out"
    out.mkdir()
    argv = ["animate", str(project), "--random-init", "tiny", "--paste-back", *extra, "-o", str(out / "a.gif")]
    assert main(argv) == EXIT_USER_ERROR
    assert message in _one_error_line(capsys.readouterr().err, "animate")
    assert list(out.iterdir()) == []
