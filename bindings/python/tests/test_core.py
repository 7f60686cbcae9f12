"""The package's core against the C header (an independent description of the ABI): library
discovery and the ABI handshake, versions, status codes, errors, options, logging."""
import ctypes
import gc
import logging
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import unittest

import libmm
from libmm import _native

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HEADER = open(os.path.join(ROOT, "include", "mm.h"), encoding="utf-8").read()
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(libmm.__file__)))


def header_define(name):
    return int(re.search(r"#define %s (\d+)" % name, HEADER).group(1))


def header_enum(name):
    """{constant: (value, trailing comment)} of `typedef enum name {...}` in mm.h."""
    body = re.search(r"typedef enum %s \{(.*?)\} %s;" % (name, name), HEADER, re.S).group(1)
    return {m.group(1): (int(m.group(2)), m.group(3) or "")
            for m in re.finditer(r"(MM_\w+)\s*=\s*(\d+),?\s*(?:/\*(.*?)\*/)?", body)}


def run_python(code, **env):
    """Run `code` in a fresh interpreter that imports the package from this tree."""
    full_env = dict(os.environ, PYTHONPATH=PACKAGE_DIR, **env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=60)


class TestLibrary(unittest.TestCase):
    def test_versions_match_the_header(self):
        major, minor, patch = (header_define("MM_VERSION_" + p) for p in ("MAJOR", "MINOR", "PATCH"))
        self.assertEqual(libmm.version(), "%d.%d.%d" % (major, minor, patch))
        self.assertEqual(libmm.version_number(), major * 10000 + minor * 100 + patch)
        self.assertEqual(libmm.ABI_VERSION, header_define("MM_ABI_VERSION"))

    def test_status_codes_match_the_header(self):
        expected = {k[3:]: v for k, (v, _) in header_enum("mm_status").items()}
        self.assertEqual({s.name: s.value for s in libmm.Status}, expected)

    def test_stop_reasons_and_progress_stages_match_the_header(self):
        for enum_class, c_name, prefix in ((libmm.StopReason, "mm_stop_reason", "MM_STOP_"),
                                           (libmm.ProgressStage, "mm_progress_stage",
                                            "MM_PROGRESS_")):
            expected = {k[len(prefix):]: v for k, (v, _) in header_enum(c_name).items()}
            self.assertEqual({s.name: s.value for s in enum_class}, expected, c_name)

    def test_enum_values_print_as_names_on_every_python(self):
        # Python 3.11 made str()/format() of an IntEnum the bare number; the docs promise names
        self.assertEqual(str(libmm.Status.ERR_IO), "Status.ERR_IO")
        self.assertEqual("%s" % libmm.Status.OK, "Status.OK")
        self.assertEqual("{}".format(libmm.StopReason.MAX_TOKENS), "StopReason.MAX_TOKENS")
        self.assertEqual(f"{libmm.ProgressStage.MODEL_LOAD}", "ProgressStage.MODEL_LOAD")
        self.assertEqual(f"{libmm.Status.ERR_IO:d}", "3")  # a numeric spec formats the number
        self.assertEqual(f"{libmm.Status.ERR_IO:>3d}", "  3")
        self.assertEqual(repr(libmm.StopReason.EOG), "<StopReason.EOG: 1>")
        self.assertEqual(libmm.Status.ERR_IO, 3)  # still an int
        self.assertEqual(libmm.Status.ERR_ARG.description, "invalid argument")  # mm.h's example
        descriptions = {s.description for s in libmm.Status}
        self.assertEqual(len(descriptions), len(libmm.Status))
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Model("/nonexistent/model.gguf")
        self.assertEqual(str(cm.exception.status), "Status.ERR_IO")
        self.assertIn("(ERR_IO)", str(cm.exception))

    def test_loads_from_MM_LIBRARY_PATH_file_or_directory(self):
        so = os.path.realpath(_native.lib._name)
        for value in (so, os.path.dirname(so)):
            r = run_python("import libmm, sys; sys.stdout.write(libmm._native.lib._name)",
                           MM_LIBRARY_PATH=value)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.startswith(value), r.stdout)

    def test_missing_library_is_a_clear_import_error(self):
        r = run_python("import libmm", MM_LIBRARY_PATH="/nonexistent/libmm.so.1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("LibraryNotFound: libmm not found (set MM_LIBRARY_PATH", r.stderr)
        self.assertIn("/nonexistent/libmm.so.1: no such file", r.stderr)

    def test_refuses_a_library_with_another_abi(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "fake.c")
            with open(src, "w") as f:
                f.write("int mm_abi_version(void) { return 2; }\n")
            so = os.path.join(tmp, "libmm.so.1")
            subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", src, "-o", so],
                           check=True)
            r = run_python("import libmm", MM_LIBRARY_PATH=so)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("has ABI version 2; this package needs 1", r.stderr)


class TestOptions(unittest.TestCase):
    def test_keys_match_the_header_enum(self):
        expected = {}
        for const, (value, comment) in header_enum("mm_opt").items():
            kind = {"int": int, "float": float, "string": str}[comment.split()[0].strip(",:")]
            expected[const[len("MM_OPT_"):].lower()] = (value, kind)
        self.assertEqual(libmm.Options.KEYS, expected)

    def test_documented_defaults(self):
        # the defaults written in mm.h's comments
        o = libmm.Options()
        self.assertEqual(o["max_tokens"], 256)
        self.assertEqual(o["repeat_last_n"], 64)
        self.assertEqual(o["use_mmap"], 1)
        self.assertEqual(o["top_p"], 1.0)
        self.assertEqual(o["temperature"], 0.0)
        self.assertEqual(o["image_max_side"], 16384)
        self.assertEqual(o["image_max_pixels"], 64 << 20)
        self.assertEqual(o["image_max_total_pixels"], 128 << 20)
        self.assertIsNone(o["chat_template"])

    def test_round_trip_unset_and_copy(self):
        o = libmm.Options(temperature=0.7, max_tokens=12, chat_template="chatml")
        self.assertAlmostEqual(o["temperature"], 0.7, places=15)
        self.assertEqual(o["max_tokens"], 12)
        self.assertEqual(o["chat_template"], "chatml")
        c = o.copy()
        del o["max_tokens"]
        self.assertEqual(o["max_tokens"], 256)
        self.assertEqual(c["max_tokens"], 12)
        self.assertEqual(libmm.Options(**{"use_mmap": True})["use_mmap"], 1)

    def test_bad_values_raise_MMError_with_status_and_detail(self):
        o = libmm.Options()
        with self.assertRaises(libmm.MMError) as cm:
            o["top_p"] = 1.5
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)
        self.assertIn("option 'top_p': value 1.5 outside", cm.exception.detail)
        self.assertEqual(cm.exception.function, "mm_options_set_float")
        self.assertIn("ERR_ARG", str(cm.exception))
        with self.assertRaises(libmm.MMError) as cm:
            o["max_tokens"] = -1
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)
        with self.assertRaises(KeyError):
            o["no_such_option"] = 1
        with self.assertRaises(TypeError):
            o["max_tokens"] = "12"
        with self.assertRaises(TypeError):
            o["chat_template"] = 3
        # an unknown key number reaches the C check: MM_ERR_UNSUPPORTED
        with self.assertRaises(libmm.MMError) as cm:
            _native.call("mm_options_set_int", o, 999, 1)
        self.assertEqual(cm.exception.status, libmm.Status.ERR_UNSUPPORTED)
        self.assertIn("unknown option key 999", cm.exception.detail)

    def test_use_after_close_is_a_python_error(self):
        o = libmm.Options()
        o.close()
        o.close()  # idempotent
        with self.assertRaisesRegex(ValueError, "Options used after close"):
            o["top_k"]


class TestLogging(unittest.TestCase):
    def tearDown(self):
        libmm.set_log_level(logging.WARNING)

    def test_library_messages_reach_python_logging(self):
        libmm.set_log_level(logging.DEBUG)
        o = libmm.Options()
        with self.assertLogs("libmm", logging.DEBUG) as cm:
            with self.assertRaises(libmm.MMError):
                _native.call("mm_options_set_int", o, 999, 1)
        # status.c logs each failure at debug level as "<status name>: <detail>"
        self.assertIn("DEBUG:libmm:unsupported: mm_options_set_int: unknown option key 999",
                      cm.output)

    def test_threshold_applies_in_the_library(self):
        libmm.set_log_level(logging.WARNING)
        o = libmm.Options()
        handler_records = []
        handler = logging.Handler()
        handler.emit = handler_records.append
        libmm.logger.addHandler(handler)
        try:
            libmm.logger.setLevel(logging.DEBUG)  # Python would pass it; the library must not call
            with self.assertRaises(libmm.MMError):
                _native.call("mm_options_set_int", o, 999, 1)
        finally:
            libmm.logger.removeHandler(handler)
        self.assertEqual(handler_records, [])


class TestModelErrors(unittest.TestCase):
    def test_missing_file(self):
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Model("/nonexistent/model.gguf")
        self.assertEqual(cm.exception.status, libmm.Status.ERR_IO)
        self.assertIn("/nonexistent/model.gguf", cm.exception.detail)

    def test_options_as_dict(self):
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Model("/nonexistent/model.gguf", options={"use_mmap": 0})
        self.assertEqual(cm.exception.status, libmm.Status.ERR_IO)
        with self.assertRaises(TypeError):
            libmm.Model("/nonexistent/model.gguf", options=[1])


class TestShutdown(unittest.TestCase):
    def test_objects_alive_at_exit_are_freed_quietly(self):
        code = textwrap.dedent("""
            import logging, libmm
            libmm.set_log_level(logging.DEBUG)
            keep = [libmm.Options(top_k=3) for _ in range(3)]
            keep.append(keep[0].copy())
        """)
        r = run_python(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")


if __name__ == "__main__":
    unittest.main()
