"""The model line of the editor's side panel: architecture and how long the weights were trained."""
from app.backend import describe
from export3d_core.config import ModelConfig


def test_description_names_the_architecture_and_the_steps_of_the_run():
    text = describe(ModelConfig.preset("tiny"), {"step": 4000})
    assert text.startswith("preset tiny · ")
    assert text.endswith(" · 4,000 steps")


def test_description_prefers_the_steps_of_the_whole_lineage():
    # a release grown with --init-from: its run counted 3,000 steps, its lineage 35,385
    text = describe(ModelConfig.preset("tiny"), {"step": 3000, "total_steps": 35385})
    assert text.endswith(" · 35,385 steps")
    assert "3,000" not in text


def test_description_without_training_metadata_names_no_steps():
    assert "steps" not in describe(ModelConfig.preset("tiny"), {})
    assert "steps" not in describe(ModelConfig.preset("tiny"))
