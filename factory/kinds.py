"""The recipe's sources and teachers, the kinds of the two sections every recipe has. Adding one is one
file plus one line here (the other families, declared the same way, sit beside their stage, and
``toonfactory/kinds.py`` lists them all).

Config models are light (pydantic only); their ``build()`` imports the heavy machinery.
"""

from __future__ import annotations

from factory.config import one_of
from factory.sources.folders import FolderSourceConfig, SamplesSourceConfig
from factory.sources.generative import PromptSourceConfig, StyleGAN2SourceConfig
from factory.sources.video import VideoSourceConfig
from factory.teachers.cartoongan import CartoonGANConfig
from factory.teachers.cartoonize import CartoonizeConfig
from factory.teachers.diffusion import DiffusionConfig
from factory.teachers.toonify import ToonifyConfig
from factory.teachers.webtoon import WebtoonConfig

SOURCES = (FolderSourceConfig, SamplesSourceConfig, VideoSourceConfig, StyleGAN2SourceConfig, PromptSourceConfig)
TEACHERS = (CartoonizeConfig, CartoonGANConfig, DiffusionConfig, ToonifyConfig, WebtoonConfig)

SourceConfig = one_of(SOURCES)
TeacherConfig = one_of(TEACHERS)
