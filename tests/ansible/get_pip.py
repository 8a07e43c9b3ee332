"""A stand-in for the get-pip.py that ansible-test downloads to bootstrap pip into the
virtual environments of its sanity tests, for machines that reach a package index but not
ansible-test's own download server: pip comes from Python's ensurepip, then the pip version
asked for from the package index.

ansible-test runs it as ``python get-pip.py [pip options] pip==X [--no-setuptools] [--no-wheel]``.
"""

import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True,
               stdout=subprocess.DEVNULL)
arguments = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *arguments]).returncode)
