"""Builds the optional compiled column builder; everything else is in pyproject.toml.

``pip install`` compiles ``pipeline/normalize/_columns.pyx`` with Cython and the system C
compiler. Without a compiler the build goes on without it (``optional=True``) and soclake uses
the pure-Python builder: same columns, slower.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize(
    [Extension("pipeline.normalize._columns", ["pipeline/normalize/_columns.pyx"], optional=True)],
    compiler_directives={"language_level": 3}, quiet=True))
