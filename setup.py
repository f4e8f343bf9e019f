from setuptools import setup

setup(cffi_modules=["aero/_build.py:ffibuilder"])
