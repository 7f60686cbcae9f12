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
        r = run([exe, "-m", self.path, "-n", "12", "--chat-template", "chatml"],
                stdin=json.dumps(CONVERSATION))
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
        r = run([exe, "-n", "12", "--chat-template", "chatml", self.path],  # model positional
                stdin=json.dumps(request))
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


class TestCommandLine(unittest.TestCase):
    """Every program follows examples/args.h: --help, and bad values refused with the reason."""

    PROGRAMS = ["mm-describe", "mm-chat-json", "mm-clip", "mm-eval", "mm-info", "mm-bench",
                os.path.join("cpp", "mm-describe-cpp")]

    def test_help_everywhere(self):
        for name in self.PROGRAMS:
            with self.subTest(program=name):
                r = run([os.path.join(ROOT, "examples", name), "--help"])
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(r.stdout.startswith("usage: " + os.path.basename(name)),
                                r.stdout)
                self.assertIn("-h, --help", r.stdout)

    def test_bad_values_refused_with_the_reason(self):
        cases = [("mm-describe", ["-n", "abc"], "-n: 'abc' is not a whole number"),
                 ("mm-describe", ["--temp", "warm"], "--temp: 'warm' is not a number"),
                 ("mm-describe", ["--top-p", "2"], "--top-p: option 'top_p': value 2 outside"),
                 ("mm-describe", ["-m"], "-m: needs a value (FILE)"),
                 ("mm-chat-json", ["-t", "1.5"], "-t: '1.5' is not a whole number"),
                 ("mm-eval", ["--choices", "1"], "--choices: 1 is not in [2, 1048576]"),
                 ("mm-bench", ["-r", "x"], "-r: 'x' is not a whole number"),
                 ("mm-info", ["-c", "-5"], "-c: -5 is not in [0, 16777216]"),
                 ("mm-clip", ["--bogus"], "--bogus: unknown option"),
                 (os.path.join("cpp", "mm-describe-cpp"), ["-n", "abc"],
                  "-n: 'abc' is not a whole number")]
        for name, args, reason in cases:
            with self.subTest(program=name, args=args):
                r = run([os.path.join(ROOT, "examples", name)] + args)
                self.assertEqual(r.returncode, 2)
                self.assertIn(os.path.basename(name) + ": " + reason, r.stderr)

    def test_mm_describe_tokens_without_a_tokenizer(self):
        path = converted("llama")["model"]  # an HF checkpoint converted without a tokenizer
        model = libmm.Model(path)
        self.assertEqual(model.n_vocab, 0)
        s = libmm.Session(model, {"max_tokens": 6})
        s.add_tokens([1, 5, 9])
        expected = [t for t, _ in s.tokens()]
        r = run([os.path.join(ROOT, "examples", "mm-describe"), "-m", path, "--tokens", "1 5 9",
                 "-n", "6"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([int(t) for t in r.stdout.split()], expected)
        r = run([os.path.join(ROOT, "examples", "mm-describe"), "-m", path, "--tokens", "1 x"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--tokens: 'x' is not a token id", r.stderr)

    def test_mm_info_model(self):
        path = converted("llama")["model"]
        r = run([os.path.join(ROOT, "examples", "mm-info"), path, "-c", "16"])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(VECTORS, "llama", "config.json")) as f:
            cfg = json.load(f)
        self.assertIn("architecture: llama", r.stdout)
        self.assertIn("layers %d, width %d, heads %d, kv heads %d" % (
            cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
            cfg["num_key_value_heads"]), r.stdout)
        self.assertIn("KV cache at 16 positions", r.stdout)
        r = run([os.path.join(ROOT, "examples", "mm-info"), "--all", path])
        self.assertIn("general.architecture = llama", r.stdout)


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
