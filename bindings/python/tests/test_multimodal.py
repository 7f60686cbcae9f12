"""Images in chat messages: a LLaVA pair (the reference case's vision file, converted, with a tiny
language model carrying the LLaMA vocabulary) fed through add_message(images=...) and through
JSON conversations in the OpenAI and Anthropic shapes; both paths must give the same state."""
import base64
import os
import unittest

import numpy as np

import libmm

from fixtures import ROOT, VECTORS, converted, tiny_llama_with_vocab
from test_text import same_state

PNG = os.path.join(VECTORS, "llava", "image.png")


def data_url(path, media="image/png"):
    with open(path, "rb") as f:
        return "data:%s;base64,%s" % (media, base64.b64encode(f.read()).decode())


class TestImagesInMessages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # the llava case projects images to 64 values: the language model must be as wide
        text = tiny_llama_with_vocab(n_embd=64, n_ctx=256)
        cls.model = libmm.Model(text, mmproj=converted("llava")["mmproj"])
        cls.image = libmm.Image.open(PNG)

    def session(self):
        return libmm.Session(self.model, {"chat_template": "llava", "n_ctx": 256})

    def test_openai_and_anthropic_shapes_equal_add_message(self):
        with open(PNG, "rb") as f:
            raw = base64.b64encode(f.read()).decode()
        ref = self.session()
        ref.add_message("user", "What is this?", images=[self.image])
        emb = self.model.encode_image(self.image)
        self.assertGreater(ref.n_past, emb.n_tokens)
        openai = self.session()
        openai.add_messages([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(PNG)}},
            {"type": "text", "text": "What is this?"}]}])
        same_state(self, openai, ref)
        anthropic = self.session()
        anthropic.add_messages({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": raw}},
            {"type": "text", "text": "What is this?"}]}]})
        same_state(self, anthropic, ref)
        # an image after text stays where it was, marked in the text
        after = self.session()
        after.add_messages([{"role": "user", "content": [
            {"type": "text", "text": "Compare"}, {"type": "image_url", "image_url": data_url(PNG)},
            {"type": "text", "text": "with this."}]}])
        ref2 = self.session()
        ref2.add_message("user", "Compare<image>with this.", images=[emb])
        same_state(self, after, ref2)
        self.assertGreater(after.n_past, emb.n_tokens)
        # and the answer streams as usual
        self.assertIsInstance(after.ask("And now?", max_tokens=4), str)

    def test_images_or_embeddings_give_the_same_message(self):
        a, b = self.session(), self.session()
        a.add_message("user", "Look: <image> and <image>", images=[self.image, self.image])
        emb = self.model.encode_image(self.image)
        b.add_message("user", "Look: <image> and <image>", images=[emb, emb])
        same_state(self, a, b)
        with self.assertRaises(libmm.MMError) as cm:
            a.add_message("user", "one marker <image>", images=[self.image, self.image])
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)

    def test_bad_images_leave_the_session_unchanged(self):
        s = self.session()
        s.add_message("user", "hi")
        before = s.n_past
        with open(os.path.join(ROOT, "tests", "data", "images", "rgb8.png"), "rb") as f:
            truncated = base64.b64encode(f.read()[:100]).decode()
        for content, status, text in [
                ([{"type": "image_url", "image_url": "data:image/png;base64," + truncated}],
                 libmm.Status.ERR_FORMAT, "messages[0], part 0:"),
                ([{"type": "image_url", "image_url": data_url(PNG)}, {"type": "image_url",
                  "image_url": "data:image/gif;base64,R0lGODlh"}],
                 libmm.Status.ERR_FORMAT, "messages[0], part 1:")]:
            with self.assertRaises(libmm.MMError) as cm:
                s.add_messages([{"role": "user", "content": content}])
            self.assertEqual(cm.exception.status, status, cm.exception.detail)
            self.assertIn(text, cm.exception.detail)
            self.assertEqual(s.n_past, before)
        # image size limits come from the options of the call
        w, h = self.image.size
        with self.assertRaises(libmm.MMError) as cm:
            s.add_messages([{"role": "user", "content": [
                {"type": "image_url", "image_url": data_url(PNG)}]}],
                options={"image_max_side": max(w, h) - 1})
        self.assertEqual(cm.exception.status, libmm.Status.ERR_LIMIT)
        self.assertEqual(s.n_past, before)

    def test_encoding_progress(self):
        calls = []
        opts = libmm.Options(progress=lambda *a: calls.append(a))
        self.model.encode_image(self.image, options=opts)
        self.assertEqual(calls[0][:2], (libmm.ProgressStage.IMAGE_ENCODE, 0))
        self.assertEqual(calls[-1][1], calls[-1][2])
        with self.assertRaises(libmm.MMError) as cm:
            self.model.encode_image(self.image, options=libmm.Options(progress=lambda *a: True))
        self.assertEqual(cm.exception.status, libmm.Status.ERR_CANCELLED)


if __name__ == "__main__":
    unittest.main()
