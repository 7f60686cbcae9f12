"""libmm.batch on a dask.distributed LocalCluster of two worker processes, on the bundled scenes
model: the results equal a single-process run item for item and the direct API's, in input
order; the answers are the scene generator's (models/images/questions.tsv); a missing file and
an undecodable one give recorded errors for their items while the others go on."""
import os
import tempfile
import unittest

import numpy as np

import libmm
from libmm import batch

from fixtures import ROOT

MODELS = os.path.join(ROOT, "models")


def questions():
    """{(image file, question): answer} of the bundled held-out set."""
    out = {}
    with open(os.path.join(MODELS, "images", "questions.tsv")) as f:
        for line in f:
            image, question, answer = line.rstrip("\n").split("\t")
            out[(image, question)] = answer
    return out


class TestBatch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from dask.distributed import Client, LocalCluster
        cls.cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        cls.client = Client(cls.cluster)
        cls.tmp = tempfile.TemporaryDirectory()
        bad = os.path.join(cls.tmp.name, "not-an-image.png")
        with open(bad, "w") as f:
            f.write("not a picture")
        images = batch.image_files(os.path.join(MODELS, "images"))
        # the bad items in the middle, so that order is checked around them
        cls.items = images[:3] + [bad, os.path.join(cls.tmp.name, "missing.png")] + images[3:]
        cls.good = [i for i, p in enumerate(cls.items) if p in images]

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.cluster.close()
        cls.tmp.cleanup()

    def check_errors(self, result):
        self.assertEqual(sorted(result.errors), [3, 4])
        self.assertIn("FORMAT", result.errors[3])
        self.assertIn("IO", result.errors[4])
        self.assertIsNone(result.values[3])

    def test_embeddings_on_two_workers(self):
        clip = os.path.join(MODELS, "scenes-clip.gguf")
        spread = batch.embed_images(clip, self.items, client=self.client, chunk_size=2)
        here = batch.embed_images(clip, self.items)
        self.check_errors(spread)
        self.assertEqual(spread.errors, here.errors)
        self.assertEqual(spread.items, self.items)
        # same code on the same machine: equal to the bit, in input order
        np.testing.assert_array_equal(spread.array, here.array)
        model = libmm.Model(clip)
        for i in self.good:
            direct = model.embed_image(libmm.Image.open(self.items[i]))
            np.testing.assert_array_equal(spread.array[i], direct)
        self.assertTrue(np.isnan(spread.array[3]).all())
        # bytes are sent to the workers as they are
        with open(self.items[0], "rb") as f:
            sent = batch.embed_images(clip, [f.read()], client=self.client)
        np.testing.assert_array_equal(sent.array[0], spread.array[0])

    def test_folder(self):
        clip = os.path.join(MODELS, "scenes-clip.gguf")
        result = batch.embed_images(clip, os.path.join(MODELS, "images"), client=self.client)
        self.assertEqual(len(result), 6)
        self.assertEqual(result.errors, {})

    def test_answers_on_two_workers(self):
        model = os.path.join(MODELS, "scenes-llava.gguf")
        mmproj = os.path.join(MODELS, "scenes-mmproj.gguf")
        question = "What is in the image?"
        spread = batch.answer_images(model, mmproj, self.items, question, client=self.client,
                                     chunk_size=2, max_tokens=64, n_threads=1)
        here = batch.answer_images(model, mmproj, self.items, question, max_tokens=64,
                                   n_threads=1)
        self.check_errors(spread)
        self.assertEqual(spread.values, here.values)
        truth = questions()
        for i in self.good:
            name = os.path.basename(self.items[i])
            expected = truth.get((name, question)) or truth[(name, "Describe the image.")]
            self.assertEqual(spread.values[i], expected, name)


if __name__ == "__main__":
    unittest.main()
