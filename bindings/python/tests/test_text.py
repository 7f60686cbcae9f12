"""Text through the Python package: tokenizing against llama.cpp's own vocabulary test vectors
(tests/vectors/tokenizer: the .inp strings and the ids llama.cpp produced), detokenizing,
streaming, conversations in the OpenAI / Anthropic shape, stop strings."""
import os
import unittest

import numpy as np

import libmm

from fixtures import VECTORS_DIR, tiny_llama_with_vocab

VOCABS = ("ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf")


def vocab_cases(vocab):
    """(text, ids) pairs of llama.cpp's test-tokenizer-0 files for `vocab`."""
    base = os.path.join(VECTORS_DIR, "tokenizer", vocab)
    with open(base + ".inp", encoding="utf-8") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    with open(base + ".out", encoding="utf-8") as f:
        ids = [[int(t) for t in line.split()] for line in f.read().split("\n")[:len(texts)]]
    return list(zip(texts, ids))


class TestTokenizer(unittest.TestCase):
    def test_llama_cpp_vectors(self):
        for vocab in VOCABS:
            model = libmm.Model(tiny_llama_with_vocab(vocab))
            cases = vocab_cases(vocab)
            self.assertGreater(len(cases), 20)
            for text, ids in cases:
                with self.subTest(vocab=vocab, text=text):
                    self.assertEqual(model.tokenize(text, add_special=False), ids)

    def test_round_trip_pieces_and_specials(self):
        model = libmm.Model(tiny_llama_with_vocab())
        self.assertEqual((model.n_vocab, model.bos, model.eos), (32000, 1, 2))
        self.assertTrue(model.is_eog(2))
        self.assertFalse(model.is_eog(15043))
        text = "Grüße, 世界! 🙂"
        ids = model.tokenize(text)
        self.assertEqual(ids[0], 1)  # the vocabulary asks for BOS
        self.assertEqual(model.detokenize(ids), text)
        # the pieces' bytes joined are the text's bytes (with SentencePiece's leading space)
        pieces = b"".join(model.token_to_piece(t) for t in ids[1:])
        self.assertEqual(pieces.decode("utf-8"), " " + text)
        self.assertEqual(model.token_to_piece(2), b"</s>")
        self.assertEqual(model.tokenize("</s>", add_special=False, parse_special=True), [2])
        self.assertNotEqual(model.tokenize("</s>", add_special=False), [2])
        long_text = "word " * 5000  # grows the id buffer past the first guess
        self.assertEqual(model.detokenize(model.tokenize(long_text)), long_text)
        with self.assertRaises(libmm.MMError) as cm:
            model.detokenize([32000])
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)
        with self.assertRaises(libmm.MMError) as cm:
            model.tokenize(b"\xff\xfe")
        self.assertEqual(cm.exception.status, libmm.Status.ERR_FORMAT)


def same_state(test, a, b):
    test.assertEqual(a.n_past, b.n_past)
    np.testing.assert_array_equal(a.logits(), b.logits())


class TestConversation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = libmm.Model(tiny_llama_with_vocab())

    def session(self, template="chatml", **settings):
        return libmm.Session(self.model, dict({"chat_template": template, "n_ctx": 256},
                                              **settings))

    def test_messages_in_both_shapes_equal_add_message(self):
        for template in ("llava", "chatml", "llama2", "raw"):
            with self.subTest(template=template):
                a, b, c = self.session(template), self.session(template), self.session(template)
                a.add_messages([
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                 {"type": "text", "text": "there"}]},
                    {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": "Name a colour."}])
                b.add_message("system", "Be brief.")
                b.add_message("user", "Hi\nthere")
                b.add_message("assistant", "Hello.")
                b.add_message("user", "Name a colour.")
                c.add_messages('{"model": "m", "system": "Be brief.", "messages": ['
                               '{"role": "user", "content": "Hi\\nthere"},'
                               '{"role": "assistant", "content": [{"type": "text",'
                               ' "text": "Hello."}]},'
                               '{"role": "user", "content": "Name a colour."}]}')
                same_state(self, a, b)
                same_state(self, c, b)

    def test_streamed_text_is_the_detokenized_answer(self):
        s = self.session(max_tokens=24)
        s.add_message("user", "Tell me a story.")
        tokens, text = [], ""
        for token, piece in s.tokens():
            tokens.append(token)
            text += piece
        self.assertEqual(len(tokens), 24)
        self.assertEqual(text, self.model.detokenize(tokens))
        self.assertEqual(s.stop_reason, libmm.StopReason.MAX_TOKENS)
        # the same seed and settings give the same answer
        s2 = self.session(max_tokens=24)
        self.assertEqual(s2.ask("Tell me a story."), text)

    def test_stop_string(self):
        s = self.session(max_tokens=24)
        s.add_message("user", "Tell me a story.")
        full = "".join(s.generate())
        stop = full[len(full) // 2:len(full) // 2 + 3]
        self.assertEqual(len(stop), 3)
        s2 = self.session(max_tokens=24)
        s2.add_stop_string(stop)
        part = s2.ask("Tell me a story.")
        self.assertEqual(part, full[:full.index(stop)])
        self.assertEqual(s2.stop_reason, libmm.StopReason.STRING)

    def test_respond_to_a_request(self):
        s = self.session(max_tokens=24)
        s.add_message("user", "Tell me a story.")
        n_prompt = s.n_past
        full = "".join(s.generate())
        stop = full[len(full) // 2:len(full) // 2 + 3]
        request = {"model": "tiny", "max_tokens": 24, "stop": [stop],
                   "messages": [{"role": "user", "content": "Tell me a story."}]}
        response = self.session().respond(request)
        self.assertEqual(response["object"], "chat.completion")
        self.assertEqual(response["model"], "tiny")
        choice = response["choices"][0]
        self.assertEqual(choice["message"]["content"], full[:full.index(stop)])
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertEqual(response["usage"]["prompt_tokens"], n_prompt)
        # Anthropic-shaped; the request's max_tokens overrides the session's options
        request = {"system": "", "max_tokens": 4,
                   "messages": [{"role": "user", "content": "Tell me a story."}]}
        response = self.session(max_tokens=24).respond(request)
        self.assertEqual(response["type"], "message")
        self.assertEqual(response["stop_reason"], "max_tokens")
        self.assertEqual(response["usage"]["output_tokens"], 4)
        with self.assertRaises(libmm.MMError) as cm:
            self.session().respond({"messages": [], "temperature": "hot"})
        self.assertEqual(cm.exception.status, libmm.Status.ERR_FORMAT)
        self.assertIn("temperature: a number expected, found string", cm.exception.detail)

    def test_message_errors(self):
        s = self.session()
        with self.assertRaises(libmm.MMError) as cm:
            s.add_messages([{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
        self.assertEqual(cm.exception.status, libmm.Status.ERR_UNSUPPORTED)
        self.assertIn("messages[0].content[0].image_url: URL scheme \"https\"",
                      cm.exception.detail)
        with self.assertRaises(libmm.MMError) as cm:
            s.add_messages('[{"role": "user", "content": "unterminated}]')
        self.assertEqual(cm.exception.status, libmm.Status.ERR_FORMAT)
        with self.assertRaises(libmm.MMError) as cm:
            s.add_message("robot", "hi")
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)
        self.assertEqual(s.n_past, 0)


if __name__ == "__main__":
    unittest.main()
