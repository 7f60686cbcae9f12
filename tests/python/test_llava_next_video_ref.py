#!/usr/bin/python3
"""The LLaVA-NeXT-Video reference (llava_next_video_ref.py) against HF transformers' own case,
and the variant case made with it (llava_next_video_max: 11 frames sampled to 3, portrait
frames, a 6x6 patch grid max-pooled by 3) against a fresh run of the reference on its folder.

HF's case is the check that the reference follows HF: every tensor within its advised
|got - ref| <= 1e-4 * max(1, |ref|) (the float64 reference against HF's float32 run), token
ids and frames exact. The variant is what tests/hf_parity runs libmm on.

Run: /usr/bin/python3 tests/python/test_llava_next_video_ref.py
"""

import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llava_next_video_ref as ref  # noqa: E402
from test_gguf_py import HF  # noqa: E402


class TestVideoReference(unittest.TestCase):
    def check_case(self, name, tolerance):
        folder = os.path.join(HF, name)
        want = ref.ref.read_safetensors(os.path.join(folder, "io.safetensors"))
        got = ref.run_case(folder, want["input_ids"][0].tolist(), want["generated"].shape[1],
                           want["frame_indices"].shape[0])
        self.assertEqual(set(got), set(want))
        for k, w in want.items():
            g = got[k]
            self.assertEqual(g.shape, w.shape, k)
            if w.dtype.kind in "iu":
                np.testing.assert_array_equal(g, w, err_msg="%s: %s" % (name, k))
            else:
                rel = np.abs(g.astype(np.float64) - w) / np.maximum(1, np.abs(w))
                self.assertLessEqual(rel.max(), tolerance, "%s: %s" % (name, k))

    def test_follows_hf_transformers(self):
        self.check_case("llava_next_video", 1e-4)

    def test_variant_is_the_references_output(self):
        self.check_case("llava_next_video_max", 1e-6)  # float32 storage of the same run

    def test_sampling_is_hfs_index_rule(self):
        self.assertEqual(ref.sample(8, 4).tolist(), [0, 2, 4, 6])
        self.assertEqual(ref.sample(11, 3).tolist(), [0, 3, 7])
        self.assertEqual(ref.sample(10, 4).tolist(), [0, 2, 5, 7])


if __name__ == "__main__":
    unittest.main()
