"""The one compiled part: the router's v1 event reader (router/envelope/_v1.c). Optional: where it cannot be
built (no C compiler), codec.py reads events in Python, the same way and about 5x slower."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("router.envelope._v1", ["router/envelope/_v1.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall"])])
