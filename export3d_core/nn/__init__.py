"""Neural-network modules of Export3D: LeBS and f_I, ViT blocks, generator G, decoder, SR, D."""
from .decoder import TriplaneDecoder
from .discriminator import DualDiscriminator
from .generator import Appearance, HybridTriplaneGenerator
from .lebs import LeBS, ResNetSE18
from .superres import SuperResolution
from .vit import EAdaLNViTBlock, EfficientSelfAttention, MixFFN, ViTBlock, modulate

__all__ = [
    "Appearance",
    "DualDiscriminator",
    "EAdaLNViTBlock",
    "EfficientSelfAttention",
    "HybridTriplaneGenerator",
    "LeBS",
    "MixFFN",
    "ResNetSE18",
    "SuperResolution",
    "TriplaneDecoder",
    "ViTBlock",
    "modulate",
]
