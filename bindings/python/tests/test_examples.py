"""The example programs (examples/mm-chat-json, examples/cpp/mm-describe-cpp) run end to end on a
tiny model and print the answer the Python package computes for the same input and settings."""
import json
import os
import subprocess
import unittest

import libmm

from fixtures import ROOT, VECTORS, converted, tiny_llama_with_vocab

CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]


def run(args, stdin=None):
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120)


class TestExamples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.path = tiny_llama_with_vocab()
        cls.model = libmm.Model(cls.path)

    def answer(self, settings, messages=None, prompt=None):
        s = libmm.Session(self.model, settings)
        if messages is not None:
            s.add_messages(messages)
        else:
            s.add_message("user", prompt)
        return "".join(s.generate())

    def test_mm_chat_json(self):
        exe = os.path.join(ROOT, "examples", "mm-chat-json")
        r = run([exe, "-n", "12", "-T", "chatml", self.path], stdin=json.dumps(CONVERSATION))
        self.assertEqual(r.returncode, 0, r.stderr)
        expected = self.answer({"max_tokens": 12, "chat_template": "chatml"}, CONVERSATION)
        response = json.loads(r.stdout)
        self.assertEqual(response["object"], "chat.completion")
        self.assertEqual(response["choices"][0]["message"],
                         {"role": "assistant", "content": expected})
        usage = response["usage"]
        self.assertEqual(response["choices"][0]["finish_reason"],
                         "length" if usage["completion_tokens"] == 12 else "stop")
        self.assertEqual(usage["total_tokens"], usage["prompt_tokens"] + usage["completion_tokens"])
        self.assertEqual(r.stderr, "")  # no terminal: no progress line
        # the request's own settings win over the command line's; Anthropic shape answered so
        request = {"system": "Be brief.", "max_tokens": 5, "messages": CONVERSATION[1:]}
        r = run([exe, "-n", "12", "-T", "chatml", self.path], stdin=json.dumps(request))
        self.assertEqual(r.returncode, 0, r.stderr)
        response = json.loads(r.stdout)
        expected = self.answer({"max_tokens": 5, "chat_template": "chatml"}, CONVERSATION)
        self.assertEqual(response["type"], "message")
        self.assertEqual(response["content"], [{"type": "text", "text": expected}])
        self.assertLessEqual(response["usage"]["output_tokens"], 5)
        # errors name the place in the conversation
        r = run([exe, self.path], stdin='[{"role": "user", "content": [{"type": "image_url",'
                                        ' "image_url": {"url": "data:image/png;base64,Zm9"}}]}]')
        self.assertEqual(r.returncode, 1)
        self.assertIn("messages[0].content[0].image_url: base64: length 3", r.stderr)
        self.assertEqual(run([exe]).returncode, 2)

    def test_mm_describe_cpp(self):
        exe = os.path.join(ROOT, "examples", "cpp", "mm-describe-cpp")
        r = run([exe, self.path, "Hello there", "-n", "10"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, self.answer({"max_tokens": 10}, prompt="Hello there") + "\n")
        r = run([exe, "/nonexistent.gguf", "x"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("input/output error", r.stderr)


class TestExamplesWithImages(unittest.TestCase):
    """mm-describe (C) and mm-describe-cpp on a LLaVA pair: the shared case's vision file with a
    tiny language model of the same width carrying the LLaMA vocabulary."""

    @classmethod
    def setUpClass(cls):
        cls.text = tiny_llama_with_vocab(n_embd=64, n_ctx=256)
        cls.mmproj = converted("llava")["mmproj"]
        cls.image = os.path.join(VECTORS, "llava", "image.png")
        model = libmm.Model(cls.text, mmproj=cls.mmproj)
        s = libmm.Session(model, {"max_tokens": 6})
        s.add_message("user", "What is this?", images=[libmm.Image.open(cls.image)])
        cls.expected = "".join(s.generate())

    def test_mm_describe(self):
        r = run([os.path.join(ROOT, "examples", "mm-describe"), "-m", self.text, "--mmproj",
                 self.mmproj, "-i", self.image, "-p", "What is this?", "-n", "6"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip("\n"), self.expected)
        self.assertNotIn("%", r.stderr)  # no terminal: no progress line

    def test_mm_describe_cpp(self):
        r = run([os.path.join(ROOT, "examples", "cpp", "mm-describe-cpp"), self.text,
                 self.mmproj, "What is this?", "-i", self.image, "-n", "6"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, self.expected + "\n")


if __name__ == "__main__":
    unittest.main()
