"""Sessions through the Python package, against the HF transformers vectors of the reference
`llama` and `llava` cases: logits at 1e-4 (scaled), greedy tokens exactly; garbage collection in
any order; two sessions on one model in two threads."""
import os
import subprocess
import sys
import textwrap
import threading
import unittest

import numpy as np

import libmm

from fixtures import converted, reference
from test_clip import assert_close


class TestLlama(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = libmm.Model(converted("llama")["model"])
        cls.ref = reference("llama")
        cls.prompt = cls.ref["input_ids"][0].tolist()

    def test_logits_and_greedy_tokens(self):
        s = libmm.Session(self.model, {"n_ctx": 64})
        self.assertEqual(s.n_ctx, 64)
        s.add_tokens(self.prompt)
        self.assertEqual(s.n_past, len(self.prompt))
        assert_close(self, s.logits(), self.ref["logits"][0, -1], "logits")
        tokens = []
        for token, piece in s.tokens(max_tokens=8):
            tokens.append(token)
            self.assertEqual(piece, "")  # no tokenizer in this file: ids only
        self.assertEqual(tokens, self.ref["generated"][0].tolist())
        self.assertEqual(s.stop_reason, libmm.StopReason.MAX_TOKENS)
        # the logits that chose the last token
        assert_close(self, s.logits(), self.ref["generated_step_logits"][0, -1], "step logits")

    def test_reset_and_repeat(self):
        s = libmm.Session(self.model, libmm.Options(n_ctx=32, max_tokens=8))
        s.add_tokens(self.prompt)
        first = [t for t, _ in s.tokens()]
        s.reset()
        self.assertEqual(s.n_past, 0)
        s.add_tokens(self.prompt)
        self.assertEqual([t for t, _ in s.tokens()], first)

    def test_errors(self):
        s = libmm.Session(self.model, {"n_ctx": 16})
        with self.assertRaises(libmm.MMError) as cm:
            list(s.tokens())  # nothing added yet
        self.assertEqual(cm.exception.status, libmm.Status.ERR_STATE)
        with self.assertRaises(libmm.MMError) as cm:
            s.add_tokens(list(range(3, 20)))  # 17 positions in a 16-position context
        self.assertEqual(cm.exception.status, libmm.Status.ERR_CTX_FULL)
        self.assertEqual(s.n_past, 0)  # all-or-nothing
        with self.assertRaises(libmm.MMError) as cm:
            s.add_tokens([5, 99])  # outside the vocabulary
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)
        with self.assertRaises(libmm.MMError) as cm:
            s.add_text("hello")  # no tokenizer
        self.assertEqual(cm.exception.status, libmm.Status.ERR_STATE)
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Session(self.model, {"chat_template": "no-such-template"})
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)
        s.cancel()  # no call running: dropped when the next one begins
        s.add_tokens([5, 6])
        self.assertEqual(s.n_past, 2)

    def test_two_threads_share_one_model(self):
        expected = self.ref["generated"][0].tolist()
        results, errors = {}, []

        def run(k):
            try:
                s = libmm.Session(self.model, {"n_ctx": 32, "max_tokens": 8})
                for _ in range(5):
                    s.reset()
                    s.add_tokens(self.prompt)
                    results.setdefault(k, []).append([t for t, _ in s.tokens()])
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for k in range(2):
            self.assertEqual(results[k], [expected] * 5)


class TestLlava(unittest.TestCase):
    def test_image_embeddings_in_the_prompt(self):
        files = converted("llava")
        ref = reference("llava")
        model = libmm.Model(files["model"], mmproj=files["mmproj"])
        emb = model.encode_image(ref["pixel_values"])
        assert_close(self, emb.to_numpy(), ref["image_features"], "image_features")
        ids = ref["input_ids"][0].tolist()
        first, last = ids.index(97), len(ids) - 1 - ids[::-1].index(97)
        self.assertEqual(last - first + 1, emb.n_tokens)
        s = libmm.Session(model, {"n_ctx": 64})
        s.add_tokens(ids[:first])
        s.add_embeddings(emb)
        s.add_tokens(ids[last + 1:])
        assert_close(self, s.logits(), ref["logits"][0, -1], "logits")
        self.assertEqual([t for t, _ in s.tokens(max_tokens=8)], ref["generated"][0].tolist())
        # the same rows given as a numpy array
        s.reset()
        s.add_tokens(ids[:first])
        s.add_embeddings(emb.to_numpy())
        s.add_tokens(ids[last + 1:])
        assert_close(self, s.logits(), ref["logits"][0, -1], "logits (numpy rows)")
        with self.assertRaises(libmm.MMError) as cm:
            s.add_embeddings(np.zeros((2, 7), np.float32))  # wrong width
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)


class TestGarbageCollection(unittest.TestCase):
    def test_objects_freed_in_any_order(self):
        # in a child process, so that a use-after-free crashes the child, not the test run
        code = textwrap.dedent("""
            import gc, itertools, libmm
            from fixtures import converted, reference
            files, ref = converted("llava"), reference("llava")
            ids = ref["input_ids"][0].tolist()
            expected = ref["generated"][0].tolist()
            def build():
                model = libmm.Model(files["model"], mmproj=files["mmproj"])
                emb = model.encode_image(ref["pixel_values"])
                s = libmm.Session(model, {"n_ctx": 64, "max_tokens": 8})
                return {"model": model, "emb": emb, "session": s, "opts": libmm.Options()}
            for order in itertools.permutations(["model", "emb", "session", "opts"]):
                objs = build()
                for name in order:
                    if name == "session":
                        continue
                    del objs[name]
                    gc.collect()
                if "session" in objs:
                    s = objs["session"]
                    s.add_tokens(ids[:2])
                    assert len([t for t, _ in s.tokens()]) == 8
                objs.clear()
                gc.collect()
            # explicit close of the model while a session uses it
            objs = build()
            objs["model"].close()
            objs["session"].add_tokens(ids[:2])
            list(objs["session"].tokens())
            # a reference cycle through a session
            objs = build()
            objs["session"].cycle = objs
            del objs
            gc.collect()
            print("ok")
        """)
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(libmm.__file__)), here]))
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "ok")


if __name__ == "__main__":
    unittest.main()
