"""Reads a GGUF file (v3, as the specification lays it out) for tests: its metadata and its
tensors' types, shapes and bytes. Nothing of frugal's own code is used, so a test compares
frugal's files against an independent reading."""
import struct
from dataclasses import dataclass

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
# ggml type id -> (bytes a block, elements a block), for the types tests meet.
_BLOCKS = {0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32),
           10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256), 20: (18, 32), 30: (2, 1)}
Q8_0 = 8


@dataclass
class Tensor:
    type: int
    shape: list
    data: bytes
    file_offset: int = 0  # where data starts in the file


@dataclass
class Gguf:
    metadata: dict
    tensors: dict  # name -> Tensor, in file order
    header_end: int = 0  # where the tensor infos end (the padding before the data starts)
    data_start: int = 0  # where the tensor data section starts


def read(path, with_tensors=True):
    data = open(path, "rb").read()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    at = 8

    def take(fmt):
        nonlocal at
        value = struct.unpack_from("<" + fmt, data, at)[0]
        at += struct.calcsize(fmt)
        return value

    def value(kind):
        nonlocal at
        if kind == 8:
            n = take("Q")
            at += n
            return data[at - n:at].decode("utf-8", "replace")
        if kind == 9:
            inner, n = take("I"), take("Q")
            return [value(inner) for _ in range(n)]
        return take(_SCALARS[kind])

    n_tensors, n_keys = take("Q"), take("Q")
    metadata = {}
    for _ in range(n_keys):
        key = value(8)
        metadata[key] = value(take("I"))
    tensors = {}
    if not with_tensors:
        return Gguf(metadata, tensors)
    infos = []
    for _ in range(n_tensors):
        name = value(8)
        shape = [take("Q") for _ in range(take("I"))]
        kind, offset = take("I"), take("Q")
        infos.append((name, shape, kind, offset))
    align = metadata.get("general.alignment", 32)
    start = (at + align - 1) // align * align
    header_end = at
    for name, shape, kind, offset in infos:
        per_block, block = _BLOCKS[kind]
        elements = 1
        for d in shape:
            elements *= d
        size = elements // block * per_block
        tensors[name] = Tensor(kind, shape, data[start + offset:start + offset + size], start + offset)
    return Gguf(metadata, tensors, header_end, start)


def pack_string(s):
    """A GGUF string: its UTF-8 length as a u64, then the bytes."""
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def with_string_key(source, dest, key, value):
    """Copies a GGUF file with one more string metadata key (the first), the data realigned."""
    data = open(source, "rb").read()
    g = read(source)
    n_keys = struct.unpack_from("<Q", data, 16)[0]
    head = data[:16] + struct.pack("<Q", n_keys + 1) + pack_string(key) + struct.pack("<I", 8) + pack_string(value)
    head += data[24:g.header_end]
    align = g.metadata.get("general.alignment", 32)
    head += b"\0" * (-len(head) % align)
    with open(dest, "wb") as f:
        f.write(head + data[g.data_start:])
