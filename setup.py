"""Builds the optional compiled modules; everything else is in pyproject.toml.

``pip install`` compiles ``pipeline/normalize/_columns.pyx`` (the column build) and
``pipeline/normalize/_records.pyx`` (the CloudTrail parser) with Cython and the system C compiler.
Without a compiler the build goes on without them (``optional=True``) and soclake uses msgspec and
the pure-Python builder: same columns, slower.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize(
    [Extension("pipeline.normalize._columns", ["pipeline/normalize/_columns.pyx"], optional=True),
     Extension("pipeline.normalize._records", ["pipeline/normalize/_records.pyx"], optional=True,
               extra_compile_args=["-O3"])],
    compiler_directives={"language_level": 3}, quiet=True))
