#!/usr/bin/python3
"""Write the small hostile JPEGs of tests/data/images/bomb_*.jpg (run with /usr/bin/python3).

Each is a real JPEG written by PIL (libjpeg-turbo) whose entropy-coded data is cut short and
closed with an EOI marker, so that a few hundred bytes declare a huge picture:
  bomb_baseline.jpg     16384x4096 grey, baseline, 64 bytes of scan data
  bomb_progressive.jpg  16384x4096 grey, progressive, 16 bytes of its first scan
  bomb_cmyk_head.jpg    2048x1024 CMYK progressive (4 components: 8 bytes of DCT coefficients
                        per pixel until the last scan), no scan data at all
libjpeg would paint the missing pixels grey; PIL accepts the first two (it refuses only a file
without EOI) and libmm refuses all three (tests/test_image.c, tests/test_chatjson.c,
tests/run_6.d/resource_limits).
"""
import base64
import io
import os

from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")


def cut(data, keep):
    """The file up to its first scan's header, `keep` bytes of scan data, then EOI."""
    sos = data.index(b"\xff\xda")
    start = sos + 2 + (data[sos + 2] << 8 | data[sos + 3])
    return data[:start + keep] + b"\xff\xd9"


def jpeg(image, **options):
    buf = io.BytesIO()
    image.save(buf, "JPEG", **options)
    return buf.getvalue()


grey = Image.new("L", (16384, 4096), 128)
files = {
    "bomb_baseline.jpg": cut(jpeg(grey, quality=50), 64),
    "bomb_progressive.jpg": cut(jpeg(grey, quality=50, progressive=True), 16),
    "bomb_cmyk_head.jpg": cut(jpeg(Image.new("CMYK", (2048, 1024), (10, 200, 30, 40)),
                                   quality=50, progressive=True), 0),
}
for name, data in files.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print(name, len(data), "bytes")

# Seeds for the fuzzers (tests/fuzz/corpus), within their small limits so that the decoder
# reaches the cut (image: 1024 x 256; chatjson: 128 x 128, a dozen in one message).
FUZZ = os.path.join(os.path.dirname(OUT), "..", "fuzz", "corpus")
small = Image.new("L", (1024, 256), 128)
tiny = Image.new("L", (128, 128), 128)
seeds = {
    "image/bomb_baseline.jpg": files["bomb_baseline.jpg"],
    "image/bomb_progressive.jpg": files["bomb_progressive.jpg"],
    "image/bomb_cmyk_head.jpg": files["bomb_cmyk_head.jpg"],
    "image/bomb_small_baseline.jpg": cut(jpeg(small, quality=50), 32),
    "image/bomb_small_progressive.jpg": cut(jpeg(small, quality=50, progressive=True), 8),
}
parts = []
for i in range(12):
    data = cut(jpeg(tiny, quality=50, progressive=i % 2 == 1), 8)
    parts.append('{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,%s"}}'
                 % base64.b64encode(data).decode())
seeds["chatjson/bombs.json"] = ('{"messages":[{"role":"user","content":[%s,'
                                '{"type":"text","text":"Describe them."}]}]}'
                                % ",".join(parts)).encode()
for name, data in seeds.items():
    with open(os.path.join(FUZZ, name), "wb") as f:
        f.write(data)
    print("fuzz corpus", name, len(data), "bytes")
