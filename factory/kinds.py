"""Every ``kind`` a recipe can name, section by section. Adding one is one file plus one line here.

Config models are light (pydantic only); their ``build()`` imports the heavy machinery.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

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

SourceConfig = Annotated[Union[SOURCES], Field(discriminator="kind")]
TeacherConfig = Annotated[Union[TEACHERS], Field(discriminator="kind")]
