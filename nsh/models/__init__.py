from nsh.models.backbones import BACKBONE_NAMES, MissingWeightsError, build_backbone
from nsh.models.hasher import Hasher
from nsh.models.heads import HashHead, LatentHead, sign_ste

__all__ = ["BACKBONE_NAMES", "MissingWeightsError", "build_backbone", "Hasher", "HashHead", "LatentHead", "sign_ste"]
