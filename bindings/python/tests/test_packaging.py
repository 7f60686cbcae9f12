"""The package as users install it: `pip install bindings/python` (pyproject.toml, setuptools,
pure Python) into a fresh virtual environment, offline (--no-index --no-build-isolation: the
build needs only the setuptools already installed). The installed package, run away from the
source tree, finds libmm.so.1 through MM_LIBRARY_PATH, else beside its own files, else the
system loader. Its sources keep to Python 3.9's grammar, and the wheel built here is installed
and run by every other interpreter found (python3.9 ... python3.19 on PATH, and the paths in
$MM_TEST_PYTHONS, separated by spaces): each gets its own venv and a run of SMOKE."""
import ast
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

import libmm

from fixtures import ROOT

PACKAGE_SRC = os.path.join(ROOT, "bindings", "python")
LIBRARY = os.path.join(ROOT, "lib", "libmm.so.1")
if os.environ.get("MM_LIBRARY_PATH"):
    LIBRARY = os.environ["MM_LIBRARY_PATH"]
    if os.path.isdir(LIBRARY):
        LIBRARY = os.path.join(LIBRARY, "libmm.so.1")

# Runs in the installed environment on any Python >= 3.9, without numpy; prints the library
# file it loaded.
SMOKE = textwrap.dedent("""
    import sys
    import libmm
    assert libmm.__file__.startswith(sys.prefix), libmm.__file__  # the installed copy
    assert str(libmm.Status.ERR_IO) == "Status.ERR_IO", str(libmm.Status.ERR_IO)
    assert "{}".format(libmm.StopReason.EOG) == "StopReason.EOG"
    try:
        libmm.Model(sys.argv[1] + ".missing")
        raise SystemExit("a missing file loaded")
    except libmm.MMError as e:
        assert e.status is libmm.Status.ERR_IO and "(ERR_IO)" in str(e), str(e)
    with libmm.Model(sys.argv[1]) as m:
        batch = m.embed_text(["a red circle", "two blue squares"])
        assert len(batch) == 2 and len(batch[1]) == m.clip_embedding_size
        try:
            m.embed_text(m.tokenize("a red circle"))
            raise SystemExit("token ids were taken as text")
        except TypeError:
            pass
    sys.stdout.write(libmm._native.lib._name)
""")
CLIP = os.path.join(ROOT, "models", "scenes-clip.gguf")


def run(cmd, **kwargs):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode, r.stdout,
                                                         r.stderr))
    return r.stdout


def clean_env(**extra):
    """The environment without the test run's own package and library settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MM_LIBRARY_PATH", "LD_LIBRARY_PATH", "PYTHONHOME")}
    env.update(extra)
    return env


class TestPipInstall(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="libmm-packaging-")
        # pip builds a local folder in place: work on a copy so the tree stays clean
        cls.src = os.path.join(cls.tmp, "python")
        shutil.copytree(PACKAGE_SRC, cls.src, ignore=shutil.ignore_patterns(
            "tests", "__pycache__", "build", "*.egg-info"))
        cls.venv = os.path.join(cls.tmp, "venv")
        run([sys.executable, "-m", "venv", "--system-site-packages", cls.venv])
        cls.python = os.path.join(cls.venv, "bin", "python")
        run([cls.python, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
             "--no-deps", cls.src])
        cls.site = run([cls.python, "-c", "import libmm, os; "
                        "print(os.path.dirname(libmm.__file__), end='')"],
                       cwd=cls.tmp, env=clean_env(MM_LIBRARY_PATH=LIBRARY))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def smoke(self, python, **env):
        return run([python, "-c", SMOKE, CLIP], cwd=self.tmp, env=clean_env(**env))

    def test_installed_package_runs_from_its_venv(self):
        self.assertTrue(self.site.startswith(self.venv), self.site)
        self.assertTrue(os.path.exists(os.path.join(self.site, "session.py")))
        self.assertFalse(os.path.exists(os.path.join(self.site, "tests")))
        loaded = self.smoke(self.python, MM_LIBRARY_PATH=LIBRARY)
        self.assertEqual(loaded, LIBRARY)
        meta = run([self.python, "-c", "from importlib.metadata import version; "
                    "print(version('libmm'), end='')"], cwd=self.tmp, env=clean_env())
        self.assertEqual(meta, libmm.version())  # the metadata's version is the library's

    def test_library_search_order(self):
        lib_dir = os.path.dirname(LIBRARY)
        # MM_LIBRARY_PATH: the file, or its folder
        self.assertEqual(self.smoke(self.python, MM_LIBRARY_PATH=lib_dir),
                         os.path.join(lib_dir, "libmm.so.1"))
        # the system loader's search path (here LD_LIBRARY_PATH): loaded by its soname
        self.assertEqual(self.smoke(self.python, LD_LIBRARY_PATH=lib_dir), "libmm.so.1")
        # a copy beside the package comes before the loader's
        beside = os.path.join(self.site, "libmm.so.1")
        shutil.copy(LIBRARY, beside)
        try:
            self.assertEqual(self.smoke(self.python, LD_LIBRARY_PATH=lib_dir), beside)
        finally:
            os.remove(beside)
        # nothing anywhere: an ImportError naming what was tried (unless the system has one)
        system = subprocess.run([sys.executable, "-c", "import ctypes; ctypes.CDLL('libmm.so.1')"],
                                env=clean_env(), capture_output=True).returncode == 0
        r = subprocess.run([self.python, "-c", "import libmm"], cwd=self.tmp, env=clean_env(),
                           capture_output=True, text=True, timeout=60)
        if system:
            self.assertEqual(r.returncode, 0, r.stderr)
        else:
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("libmm not found (set MM_LIBRARY_PATH", r.stderr)
            self.assertIn(beside + ": no such file", r.stderr)

    def test_other_interpreters_install_the_wheel_and_run(self):
        dist = os.path.join(self.tmp, "dist")
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-index", "--no-build-isolation",
             "--no-deps", "-w", dist, self.src], cwd=self.tmp)
        wheel, = glob.glob(os.path.join(dist, "libmm-*-py3-none-any.whl"))
        names = ["python3.%d" % minor for minor in range(9, 20)]
        found = [shutil.which(n) for n in names] + os.environ.get("MM_TEST_PYTHONS", "").split()
        # the running interpreter: test_installed_package_runs_from_its_venv
        tried = {"%d.%d" % sys.version_info[:2]: sys.executable}
        for python in [p for p in found if p]:
            probe = subprocess.run([python, "-c", "import sys; print(sys.version_info >= (3, 9), "
                                    "'%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True, env=clean_env())
            if probe.returncode != 0 or not probe.stdout.startswith("True"):
                continue  # a launcher that has no such version (pyenv shims), or older than 3.9
            version = probe.stdout.split()[1]
            if version in tried:
                continue
            venv = os.path.join(self.tmp, "venv-" + version)
            run([python, "-m", "venv", venv], env=clean_env())
            venv_python = os.path.join(venv, "bin", "python")
            run([venv_python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", wheel],
                env=clean_env())
            self.assertEqual(self.smoke(venv_python, MM_LIBRARY_PATH=LIBRARY), LIBRARY, version)
            tried[version] = python
        sys.stderr.write("[interpreters: %s] " % " ".join(sorted(tried)))


class TestSyntax(unittest.TestCase):
    def test_sources_parse_as_python_3_9(self):
        files = glob.glob(os.path.join(PACKAGE_SRC, "libmm", "*.py"))
        self.assertGreater(len(files), 5)
        for path in files:
            with open(path, encoding="utf-8") as f:
                ast.parse(f.read(), path, feature_version=(3, 9))


if __name__ == "__main__":
    unittest.main()
