#!/usr/bin/python3
"""The LLaVA-NeXT reference (llava_next_ref.py) against HF transformers' own case, and the
variant cases made with it against a fresh run of the reference on their folders.

HF's case (vectors/hf/llava_next) is the check that the reference follows HF: every tensor
within its advised |got - ref| <= 1e-4 * max(1, |ref|) (the float64 reference against HF's
float32 run), token ids exact. The variants (llava_next_wide, llava_next_tall: other grids,
patch sizes, feature layers and image shapes, odd padding included) are what tests/hf_parity
runs libmm on; here they must be what the reference computes from their files.

Run: /usr/bin/python3 tests/python/test_llava_next_ref.py   (MM_SHARED=DIR overrides tests/)
"""

import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llava_next_ref as ref  # noqa: E402
from test_gguf_py import HF  # noqa: E402

TOLERANCE = 1e-4


class TestReference(unittest.TestCase):
    def check_case(self, name, tolerance):
        folder = os.path.join(HF, name)
        want = ref.read_safetensors(os.path.join(folder, "io.safetensors"))
        got = ref.run_case(folder, want["input_ids"][0].tolist(), want["generated"].shape[1])
        self.assertEqual(set(got), set(want))
        for k, w in want.items():
            g = got[k]
            self.assertEqual(g.shape, w.shape, k)
            if w.dtype.kind == "i":
                np.testing.assert_array_equal(g, w, err_msg="%s: %s" % (name, k))
            else:
                rel = np.abs(g.astype(np.float64) - w) / np.maximum(1, np.abs(w))
                self.assertLessEqual(rel.max(), tolerance, "%s: %s" % (name, k))
        self.assertEqual(ref.count_tokens(folder), int(want["num_image_tokens"][0]))

    def test_follows_hf_transformers(self):
        self.check_case("llava_next", TOLERANCE)

    def test_variants_are_the_references_output(self):
        for name in ("llava_next_wide", "llava_next_tall"):
            self.check_case(name, 1e-6)  # float32 storage of the same float64 run


if __name__ == "__main__":
    unittest.main()
