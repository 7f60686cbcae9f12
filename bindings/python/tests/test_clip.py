"""CLIP and image encoding through the Python package, against the HF transformers vectors of the
reference `clip` case in tests/vectors/hf (tolerance |c - ref| <= 1e-4 * max(1, |ref|), as the
case advises)."""
import os
import subprocess
import sys
import textwrap
import unittest

import numpy as np

import libmm

from fixtures import ROOT, VECTORS, converted, reference

TOL = 1e-4


def assert_close(test, got, ref, what):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    test.assertEqual(got.shape, ref.shape, what)
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    test.assertLessEqual(err.max(), TOL, "%s: max scaled error %.3g" % (what, err.max()))


class TestClip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = libmm.Model(converted("clip")["model"])
        cls.ref = reference("clip")

    def test_image_and_text_embeddings(self):
        self.assertEqual(self.model.clip_embedding_size, self.ref["image_embeds"].shape[1])
        for i in range(self.ref["pixel_values"].shape[0]):
            img = self.model.embed_image(self.ref["pixel_values"][i])
            assert_close(self, img, self.ref["image_embeds"][i], "image_embeds[%d]" % i)
            txt = self.model.embed_tokens(self.ref["input_ids"][i].tolist())
            assert_close(self, txt, self.ref["text_embeds"][i], "text_embeds[%d]" % i)

    def test_logits_from_similarity_and_scale(self):
        images = [self.model.embed_image(p) for p in self.ref["pixel_values"]]
        texts = [self.model.embed_tokens(ids) for ids in self.ref["input_ids"]]
        logits = [[self.model.logit_scale * libmm.Model.similarity(a, b) for b in texts]
                  for a in images]
        assert_close(self, logits, self.ref["logits_per_image"], "logits_per_image")

    def test_encode_image_gives_the_last_hidden_state(self):
        # a CLIP file has no projector: the embeddings are the vision tower's last hidden state
        emb = self.model.encode_image(self.ref["pixel_values"][0])
        self.assertEqual(emb.shape, self.ref["vision_last_hidden_state"].shape[1:])
        assert_close(self, emb.to_numpy(), self.ref["vision_last_hidden_state"][0],
                     "vision_last_hidden_state")
        self.assertEqual(emb.tolist()[1], emb.to_numpy()[1].tolist())
        # the same pixels as a flat buffer with explicit size
        flat = self.ref["pixel_values"][0].astype(np.float32).tobytes()
        emb2 = self.model.encode_image(flat, width=32, height=32)
        np.testing.assert_array_equal(emb2.to_numpy(), emb.to_numpy())

    def test_images_are_preprocessed_as_hf_does(self):
        # the CLIPImageProcessor outputs at size 32 of the reference preprocess case, through the
        # same 32-pixel model: decoding + preprocessing in libmm gives the same embedding
        pre = reference("preprocess")
        for name in ("rgb_61x47.png", "rgba_40x64.png", "q90_80x50.jpg"):
            with self.subTest(image=name):
                img = libmm.Image.open(os.path.join(VECTORS, "preprocess", name))
                ref = self.model.embed_image(pre[name.split(".")[0] + ".pixel_values_s32"])
                got = self.model.embed_image(img)
                # JPEG: PIL and libmm share libjpeg-turbo, so pixels are identical too
                assert_close(self, got, ref, name)
                emb = self.model.encode_image(img).to_numpy()
                ref_emb = self.model.encode_image(
                    pre[name.split(".")[0] + ".pixel_values_s32"]).to_numpy()
                assert_close(self, emb, ref_emb, name + " hidden state")

    def test_errors(self):
        with self.assertRaises(libmm.MMError) as cm:
            self.model.embed_tokens([1, 2, 1000])  # id outside the 99-token vocabulary
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)
        with self.assertRaises(libmm.MMError) as cm:
            self.model.embed_text("a photo")  # this file carries no tokenizer
        self.assertEqual(cm.exception.status, libmm.Status.ERR_UNSUPPORTED)
        img = libmm.Image.from_pixels(np.zeros((40, 40, 3), np.uint8))
        with self.assertRaises(libmm.MMError) as cm:
            self.model.classify(img, ["a cat", "a dog"])  # labels need the tokenizer
        self.assertEqual(cm.exception.status, libmm.Status.ERR_UNSUPPORTED)
        with self.assertRaises(ValueError):
            self.model.embed_image(np.zeros((2, 32, 32), np.float32))
        with self.assertRaises(ValueError):
            libmm.Model.similarity([1.0, 2.0], [1.0])
        self.assertAlmostEqual(libmm.Model.similarity([1.0, 0.0], [0.0, 2.0]), 0.0)
        self.assertAlmostEqual(libmm.Model.similarity([3.0, 4.0], [6.0, 8.0]), 1.0, places=6)


class TestTextInputs(unittest.TestCase):
    """embed_text takes text only (a str, or a list/tuple of str as a batch); token ids go
    through embed_tokens. The bundled CLIP model carries a tokenizer."""

    @classmethod
    def setUpClass(cls):
        cls.model = libmm.Model(os.path.join(ROOT, "models", "scenes-clip.gguf"))

    def test_a_batch_is_the_list_of_single_embeddings(self):
        texts = ["a red circle", "two blue squares on the left", "a green triangle"]
        singles = [self.model.embed_text(t) for t in texts]
        for batch in (texts, tuple(texts)):
            got = self.model.embed_text(batch)
            self.assertIsInstance(got, list)
            self.assertEqual(len(got), len(texts))
            for g, s in zip(got, singles):
                np.testing.assert_array_equal(g, s)
        self.assertEqual(self.model.embed_text([]), [])
        # distinct texts give distinct unit vectors
        self.assertLess(libmm.Model.similarity(singles[0], singles[1]), 0.999)
        self.assertAlmostEqual(float(np.linalg.norm(singles[0])), 1.0, places=5)

    def test_text_equals_its_tokens(self):
        text = "a red circle"
        np.testing.assert_array_equal(self.model.embed_text(text),
                                      self.model.embed_tokens(self.model.tokenize(text)))

    def test_anything_but_text_is_a_type_error(self):
        ids = self.model.tokenize("a red circle")
        for bad in (ids, tuple(ids), np.array(ids), b"a red circle", None, 5,
                    ["a red circle", 3], [ids]):
            with self.subTest(value=repr(bad)[:40]):
                with self.assertRaises(TypeError) as cm:
                    self.model.embed_text(bad)
                self.assertIn("embed_text takes a str or a list of str", str(cm.exception))
        with self.assertRaises(TypeError) as cm:
            self.model.embed_text(ids)
        self.assertIn("not a list holding int (token ids: embed_tokens)", str(cm.exception))
        for bad in ("a red circle", b"abc", [1.5, 2.0]):
            with self.subTest(value=repr(bad)):
                with self.assertRaises(TypeError):
                    self.model.embed_tokens(bad)


class TestWithoutNumpy(unittest.TestCase):
    def test_lists_and_buffers_work_without_numpy(self):
        code = textwrap.dedent("""
            import sys
            sys.modules["numpy"] = None  # importing numpy now fails
            import array, libmm
            from fixtures import converted
            m = libmm.Model(converted("clip")["model"])
            t = m.embed_tokens([97, 5, 6, 98])
            assert isinstance(t, list) and len(t) == m.clip_embedding_size, t
            px = array.array("f", [0.25] * (3 * 32 * 32))
            e = m.encode_image(px, width=32, height=32)
            rows = e.tolist()
            assert len(rows) == e.n_tokens and len(rows[0]) == e.n_embd
            i = m.embed_image(px, width=32, height=32)
            assert abs(libmm.Model.similarity(i, i) - 1) < 1e-6
            print("ok")
        """)
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(libmm.__file__)), here]))
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "ok")


if __name__ == "__main__":
    unittest.main()
