from mssoft._version import __version__
