"""The CTSDG networks: generator, discriminator and the VGG16 loss network."""

from ctsdg.models.discriminator import Discriminator
from ctsdg.models.generator import Generator, GeneratorOutput, generator_inputs
from ctsdg.models.vgg import VGG16Features

__all__ = ["Discriminator", "Generator", "GeneratorOutput", "VGG16Features", "generator_inputs"]
