# The pictures of the fake's images=1 datasets: JPEG and PNG files drawn from a
# seed text, a thumbnail the same picture smaller, another version its negative.

from __future__ import annotations

import random
import zlib


IMAGE_SIZES = ((320, 240), (256, 192), (384, 256), (192, 128))
THUMB_SCALE = 4
CELL = 8  # the picture is drawn in 8x8 cells: one JPEG block each


def image_seed(kind: str, seed: str, width: int, height: int, ext: str) -> str:
    """The seed text of an image file: what file_bytes() draws it from. The
    data file and the thumbnail of an item share @seed: one picture."""
    return f"img:{kind}:{width}x{height}:{ext}:{seed}"


def picture(seed: str, width: int, height: int, scale: int) -> list[list[tuple[int, int, int]]]:
    """The colour of each cell of a picture: a sky-to-ground gradient with a
    few boxes on it, the same whatever the scale (a thumbnail shows the
    picture its data file shows, smaller)."""
    rng = random.Random(seed)
    base = [rng.randrange(256) for _ in range(3)]
    boxes = []
    full_w, full_h = width * scale, height * scale
    for _ in range(rng.randint(2, 5)):
        w, h = rng.randint(full_w // 8, full_w // 2), rng.randint(full_h // 8, full_h // 2)
        x, y = rng.randrange(full_w - w), rng.randrange(full_h - h)
        boxes.append((x, y, x + w, y + h, tuple(rng.randrange(256) for _ in range(3))))
    cols, rows = -(-width // CELL), -(-height // CELL)
    cells = []
    for cy in range(rows):
        row = []
        for cx in range(cols):
            px, py = (cx * CELL + CELL // 2) * scale, (cy * CELL + CELL // 2) * scale
            colour = tuple(min(255, c * py // full_h + 40) for c in base)
            for x0, y0, x1, y1, box in boxes:
                if x0 <= px < x1 and y0 <= py < y1:
                    colour = box
            row.append(colour)
        cells.append(row)
    return cells


def png_bytes(cells: list, width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big"))

    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter: none
        raw += b"".join(bytes(colour) * CELL for colour in cells[y // CELL])[:width * 3]
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, 2, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw), 6))
            + chunk(b"IEND", b""))


# a baseline JPEG whose blocks each hold one colour: only DC coefficients,
# so no DCT is needed. DC table: the standard luminance one (JPEG Annex K).
DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
DC_VALS = tuple(range(12))
QUANT = 8


def huffman_codes(bits: tuple, vals: tuple) -> dict[int, tuple[int, int]]:
    codes, code, at = {}, 0, 0
    for length, count in enumerate(bits, 1):
        for _ in range(count):
            codes[vals[at]] = (code, length)
            code += 1
            at += 1
        code <<= 1
    return codes


DC_CODES = huffman_codes(DC_BITS, DC_VALS)


class BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            byte = (self.acc >> (self.n - 8)) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)  # stuffing
            self.n -= 8

    def flush(self) -> bytes:
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with ones
        return bytes(self.out)


def jpeg_bytes(cells: list, width: int, height: int) -> bytes:
    def segment(marker: int, data: bytes) -> bytes:
        return bytes((0xFF, marker)) + (len(data) + 2).to_bytes(2, "big") + data

    bits = BitWriter()
    previous = [0, 0, 0]
    for row in cells:
        for r, g, b in row:
            ycc = (0.299 * r + 0.587 * g + 0.114 * b,
                   128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                   128 + 0.5 * r - 0.418688 * g - 0.081312 * b)
            for component, value in enumerate(ycc):
                dc = round(8 * (value - 128) / QUANT)
                diff, previous[component] = dc - previous[component], dc
                size = abs(diff).bit_length()
                code, length = DC_CODES[size]
                bits.write(code, length)
                if size:
                    bits.write(diff if diff > 0 else diff + (1 << size) - 1, size)
                bits.write(0, 1)  # AC: end of block (the only AC code, "0")
    ac_table = bytes((1,) + (0,) * 15) + bytes((0,))
    dc_table = bytes(DC_BITS) + bytes(DC_VALS)
    return (b"\xff\xd8"
            + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            + segment(0xDB, b"\x00" + bytes((QUANT,)) + bytes((1,)) * 63)
            + segment(0xC0, b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
                      + b"\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00")
            + segment(0xC4, b"\x00" + dc_table + b"\x10" + ac_table)
            + segment(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
            + bits.flush() + b"\xff\xd9")


def image_bytes(seed_text: str) -> bytes:
    """The bytes of the image a seed text of image_seed() names."""
    _, kind, size, ext, seed = seed_text.split(":", 4)
    width, height = (int(n) for n in size.split("x"))
    scale = THUMB_SCALE if kind == "thumbnail" else 1
    changed = seed.endswith((":changed", ":reuploaded"))
    cells = picture(seed.rsplit(":", 1)[0] if changed else seed, width, height, scale)
    if changed:  # another version of the file: the negative
        cells = [[tuple(255 - c for c in colour) for colour in row] for row in cells]
    return png_bytes(cells, width, height) if ext == ".png" else jpeg_bytes(cells, width, height)
