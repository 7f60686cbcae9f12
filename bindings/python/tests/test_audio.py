"""Audio through the Python package: clips from WAV files and samples, and a Qwen2-Audio model
(the HF case, converted with GPT-2's first tokens as its vocabulary, as many as the case's:
tests/data/byte_vocab.py; its ids can then be written as text)
answering as HF does."""
import json
import os
import subprocess
import sys
import unittest

import numpy as np

import libmm
from fixtures import ROOT, VECTORS, converted, reference, tmp_path

CASE = "qwen2_audio"
WAV = os.path.join(VECTORS, CASE, "audio.wav")


def text_of(ids):
    """GPT-2's first 94 ids are the bytes '!'..'~'."""
    assert all(0 <= k < 94 for k in ids), ids
    return "".join(chr(33 + int(k)) for k in ids)


class AudioClips(unittest.TestCase):
    def test_wav_reads_as_the_reference_waveform(self):
        with libmm.Audio.open(WAV) as clip:
            self.assertEqual(clip.sample_rate, 16000)
            np.testing.assert_array_equal(clip.samples(), reference(CASE)["waveform"])

    def test_samples_are_mixed_to_mono(self):
        clip = libmm.Audio.from_samples(np.array([1.0, 0.0, -0.5, 0.25], np.float32), 8000,
                                        channels=2)
        self.assertEqual(len(clip), 2)
        self.assertEqual(list(clip.samples()), [0.5, -0.125])
        self.assertAlmostEqual(clip.seconds, 2 / 8000)

    def test_other_formats_and_limits_raise(self):
        with self.assertRaises(libmm.MMError) as e:
            libmm.Audio.from_bytes(b"fLaC\0\0\0\x22")
        self.assertEqual(e.exception.status, libmm.Status.ERR_UNSUPPORTED)
        with open(WAV, "rb") as f:
            data = f.read()
        with self.assertRaises(libmm.MMError) as e:
            libmm.Audio.from_bytes(data, {"audio_max_seconds": 1})
        self.assertEqual(e.exception.status, libmm.Status.ERR_LIMIT)
        with self.assertRaises(libmm.MMError) as e:
            libmm.Audio.from_bytes(data[:100])
        self.assertEqual(e.exception.status, libmm.Status.ERR_FORMAT)


class Qwen2Audio(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        vocab = tmp_path("byte_vocab.gguf")
        with open(os.path.join(VECTORS, CASE, "config.json")) as f:
            n_vocab = json.load(f)["text_config"]["vocab_size"]
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "data", "byte_vocab.py"),
                        str(n_vocab), vocab], check=True)
        files = converted(CASE, "--vocab", vocab)
        cls.model = libmm.Model(files["model"], mmproj=files["mmproj"])
        cls.ref = reference(CASE)

    def test_greedy_answer_matches_hf(self):
        ids = [int(k) for k in self.ref["input_ids"][0]]
        k = ids.index(97)  # the case's audio_token_index
        prompt = text_of(ids[:k]) + "<audio>" + text_of(ids[k + 1:])
        n_tokens = int(self.ref["num_audio_tokens"][0])
        with libmm.Audio.open(WAV) as clip:
            self.assertEqual(self.model.n_tokens(clip), n_tokens)
            s = libmm.Session(self.model, {"chat_template": "raw"})
            s.add_message("user", prompt, [clip])
        self.assertEqual(s.n_past, len(ids) - 1 + n_tokens)
        generated = self.ref["generated"][0]
        answer = "".join(s.generate(max_tokens=len(generated)))
        self.assertEqual(answer, text_of(generated))

    def test_encoded_clip_equals_the_clip(self):
        with libmm.Audio.open(WAV) as clip:
            rows = self.model.encode_audio(clip)
            a = libmm.Session(self.model, {"chat_template": "raw"})
            a.add_message("user", "b<audio>", [clip])
        b = libmm.Session(self.model, {"chat_template": "raw"})
        b.add_message("user", "b<audio>", [rows])
        self.assertEqual(a.n_past, b.n_past)
        np.testing.assert_array_equal(a.logits(), b.logits())


if __name__ == "__main__":
    unittest.main()
