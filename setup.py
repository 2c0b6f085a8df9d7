"""Package discovery only; all metadata lives in pyproject.toml.

`modules/` sits at the top level (one directory per platform service) but
installs as `plinth.modules`, which `packages.find` cannot express.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["plinth", "plinth.*"])
    + ["plinth.modules"]
    + [f"plinth.modules.{name}" for name in find_packages("modules")],
)
