"""ScratchMaker helpers: the tested kernels behind the notebooks."""

__version__ = "0.1.0"
