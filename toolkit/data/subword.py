"""Subword vocabulary with sentencepiece, trained on a corpus's training split and carried
inside the checkpoint (as bytes), so a model always decodes with the vocabulary it learned."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Sequence

import sentencepiece as spm

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def train_sentencepiece(
    sentences: Iterable[str],
    vocab_size: int = 8000,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    seed_sentencepiece_size: int = 200_000,
) -> bytes:
    """Train a model (pad 0, unk 1, bos 2, eos 3) and return its serialized bytes.

    ``hard_vocab_limit=False`` lets tiny corpora (tests) end up with fewer pieces.
    """
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        hard_vocab_limit=False,
        seed_sentencepiece_size=seed_sentencepiece_size,
        num_threads=1,
        minloglevel=2,
    )  # fmt: skip
    return buffer.getvalue()


class SubwordTokenizer:
    """Encode text to ids and back with a trained sentencepiece model."""

    pad_id, unk_id, bos_id, eos_id = PAD, UNK, BOS, EOS

    def __init__(self, model: bytes) -> None:
        self.model = model
        self.sp = spm.SentencePieceProcessor(model_proto=model)

    @classmethod
    def from_state(cls, text: str) -> SubwordTokenizer:
        return cls(base64.b64decode(text))

    def state(self) -> str:
        """The model as base64 text (fits a checkpoint's hyper-parameters)."""
        return base64.b64encode(self.model).decode("ascii")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def id_to_piece(self, ids: Sequence[int]) -> list[str]:
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        specials = {PAD, BOS, EOS}
        return self.sp.decode([int(i) for i in ids if int(i) not in specials])
