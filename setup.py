"""Only for what pyproject.toml cannot say: ship ``deltaflow-autolog.pth`` at the root of the wheel,
so installing deltaflow installs the autolog startup hook (see deltaflow/autologging/_startup.py).
Everything else about the package is declared in pyproject.toml."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "deltaflow-autolog.pth"


class build_py_with_pth(build_py):  # noqa: N801 - setuptools command naming
    def run(self) -> None:
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        self.copy_file(os.path.join(here, "src", PTH), os.path.join(self.build_lib, PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode: int = 1) -> list:
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": build_py_with_pth})
