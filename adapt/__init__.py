"""Few-shot style adaptation of the generative teachers: one module per method.

:mod:`adapt.lora` trains a DreamBooth-style LoRA for the Stable Diffusion teacher;
:mod:`adapt.stylegan2` fine-tunes a StyleGAN2 generator for the Toonify teacher. Both
share the loop, checkpoints and image folder of :mod:`adapt.training`. The config models
are light (pydantic only); ``run()`` imports the heavy machinery.
"""

from __future__ import annotations

from adapt.lora import LoraAdaptConfig
from adapt.stylegan2 import StyleGAN2AdaptConfig
from factory.config import one_of

ADAPTERS = (LoraAdaptConfig, StyleGAN2AdaptConfig)
AdaptConfig = one_of(ADAPTERS)
