"""The progress callback from Python: what a model load reports, stopping it, and exceptions
raised inside the callback."""
import unittest

import libmm

from fixtures import converted, n_tensors


class TestLoadProgress(unittest.TestCase):
    def setUp(self):
        self.path = converted("clip")["model"]

    def test_true_stops_the_load(self):
        calls = []

        def progress(stage, done, total):
            calls.append((stage, done, total))
            return True

        with self.assertRaises(libmm.MMError) as cm:
            libmm.Model(self.path, options=libmm.Options(progress=progress))
        self.assertEqual(cm.exception.status, libmm.Status.ERR_CANCELLED)
        self.assertIn("model load cancelled by the progress callback", cm.exception.detail)
        # the first report comes before any tower is read: 0 of every tensor in the file
        total = n_tensors(self.path)
        self.assertEqual(calls, [(libmm.ProgressStage.MODEL_LOAD, 0, total)])
        self.assertEqual(total, 77)

    def test_exception_in_the_callback_is_raised_by_the_call(self):
        def progress(stage, done, total):
            raise KeyboardInterrupt

        opts = libmm.Options(progress=progress)
        with self.assertRaises(KeyboardInterrupt) as cm:
            libmm.Model(self.path, options=opts)
        self.assertIsInstance(cm.exception.__cause__, libmm.MMError)
        self.assertEqual(cm.exception.__cause__.status, libmm.Status.ERR_CANCELLED)
        # a copy of the options calls the same function, and reports through the copy
        with self.assertRaises(KeyboardInterrupt):
            libmm.Model(self.path, options=opts.copy())

    def test_removing_the_callback(self):
        opts = libmm.Options(progress=lambda *a: True)
        opts.set_progress(None)
        try:
            libmm.Model(self.path, options=opts).close()
        except libmm.MMError as e:  # towers not implemented yet may refuse the file
            self.assertNotEqual(e.status, libmm.Status.ERR_CANCELLED)


if __name__ == "__main__":
    unittest.main()
