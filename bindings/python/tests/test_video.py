"""Video through the Python package: clips from frames and from an MP4 (made with the ffmpeg
command), and the LLaVA-NeXT-Video HF case (converted with GPT-2's first tokens as its
vocabulary: tests/data/byte_vocab.py, so its ids can be written as text) answering as HF does
from its frames sampled by the library."""
import json
import os
import subprocess
import sys
import unittest

import libmm
from fixtures import ROOT, VECTORS, converted, reference, tmp_path

CASE = "llava_next_video"
FRAMES = [os.path.join(VECTORS, CASE, "frame_%02d.png" % i) for i in range(8)]


def text_of(ids):
    """GPT-2's first 94 ids are the bytes '!'..'~'."""
    assert all(0 <= k < 94 for k in ids), ids
    return "".join(chr(33 + int(k)) for k in ids)


class Clips(unittest.TestCase):
    def test_frames_are_sampled_as_hf(self):
        frames = [libmm.Image.open(p) for p in FRAMES]
        with libmm.Video.from_frames(frames, options={"video_frames": 4}) as v:
            self.assertEqual(len(v), 4)
            self.assertEqual(v.times(), [0.0, 2.0, 4.0, 6.0])  # np.arange(0, 8, 2)
        with libmm.Video.from_frames(frames, [0.5 * i for i in range(8)],
                                     {"video_interval": 1.5}) as v:
            self.assertEqual(v.times(), [0.0, 1.5, 3.0])
        with self.assertRaises(libmm.MMError) as e:
            libmm.Video.from_frames(frames, options={"video_max_frames": 2})
        self.assertEqual(e.exception.status, libmm.Status.ERR_LIMIT)

    def test_an_mp4_reads_back(self):
        mp4 = tmp_path("frames.mp4")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "4", "-i",
                        os.path.join(VECTORS, CASE, "frame_%02d.png"), "-c:v", "libx264rgb",
                        "-qp", "0", "-pix_fmt", "rgb24", mp4], check=True)
        if not libmm.video_files_available():
            with self.assertRaises(libmm.MMError) as e:
                libmm.Video.open(mp4)
            self.assertEqual(e.exception.status, libmm.Status.ERR_UNSUPPORTED)
            return
        with libmm.Video.open(mp4, {"video_frames": 4}) as v:
            self.assertEqual(v.times(), [0.0, 0.5, 1.0, 1.5])
        with open(mp4, "rb") as f:
            with libmm.Video.from_bytes(f.read(), {"video_frames": 2}) as v:
                self.assertEqual(len(v), 2)


class LlavaNextVideo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        vocab = tmp_path("byte_vocab_video.gguf")
        with open(os.path.join(VECTORS, CASE, "config.json")) as f:
            config = json.load(f)
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "data", "byte_vocab.py"),
                        str(config["text_config"]["vocab_size"]), vocab], check=True)
        files = converted(CASE, "--vocab", vocab)
        cls.model = libmm.Model(files["model"], mmproj=files["mmproj"])
        cls.ref = reference(CASE)
        cls.video_token = config["video_token_index"]

    def test_greedy_answer_matches_hf(self):
        ids = [int(k) for k in self.ref["input_ids"][0]]
        first, last = ids.index(self.video_token), len(ids) - ids[::-1].index(self.video_token)
        prompt = text_of(ids[:first]) + "<video>" + text_of(ids[last:])
        frames = [libmm.Image.open(p) for p in FRAMES]
        n = len(self.ref["frame_indices"])
        with libmm.Video.from_frames(frames, options={"video_frames": n}) as v:
            self.assertEqual(self.model.n_tokens(v), last - first)
            s = libmm.Session(self.model, {"chat_template": "raw"})
            s.add_message("user", prompt, [v])
        self.assertEqual(s.n_past, len(ids))
        generated = self.ref["generated"][0]
        self.assertEqual("".join(s.generate(max_tokens=len(generated))), text_of(generated))


if __name__ == "__main__":
    unittest.main()
